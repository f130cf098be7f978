"""Executors: the code that runs one kind of workflow node (``http``, ...)."""
