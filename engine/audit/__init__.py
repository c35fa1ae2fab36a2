"""The audit log: every outcome recorded, hash-chained, before it is released.

    from vedtak.audit import AuditLog
    with AuditLog.open("decisions.db") as log:
        decision = log.decide(plan, case)      # committed to the log before it returns
"""

from .block_store import AuditRecordV2
from .log import AuditLog, open_store
from .record import AuditRecordV1, Entry
from .store import AuditStore, StoredRuleset, StoreError

__all__ = ["AuditLog", "AuditRecordV1", "AuditRecordV2", "AuditStore", "Entry", "StoreError", "StoredRuleset",
           "open_store"]
