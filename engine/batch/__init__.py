"""Batch runs: reading case files within the input limits, `vedtak run` (local workers writing
audit blocks) and the Dask executor."""
