"""The aobc runtime (aobc.runtime): interpreter, executors and stores."""
