"""Sweeps: config schema, work units, executors, results store."""
