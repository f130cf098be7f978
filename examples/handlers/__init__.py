"""Python functions the example workflows call (`function "handlers.leads:score"`)."""
