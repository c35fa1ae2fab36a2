"""A worker task for the pii resume test, importable by Dask's worker processes."""

from __future__ import annotations

import vedtak.batch.distributed as distributed
from dist_support import stop_after_first_block


def stop_after_first_chunk(task: dict) -> dict:
    """A worker task that records partition 0's first chunk, then fails (a disk error, say),
    leaving the partition's chain part-done for --resume to finish."""
    if task["partition"]["index"] != 0:
        return distributed.run_partition(task)
    return stop_after_first_block(task)
