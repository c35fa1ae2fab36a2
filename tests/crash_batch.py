"""A batch for the crash test: decides cases with an audit log and prints each case id it releases.

An id is printed only after its record is committed, so a kill -9 at any instant must leave
every printed id in the log.
"""

import json
import sys

import vedtak
from vedtak.audit import AuditLog

url, ruleset, cases_path, batch = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
plan = vedtak.compile(ruleset)
with open(cases_path) as f:
    cases = [json.loads(line) for line in f]
with AuditLog.open(url, batch_size=batch) as log:
    for decision in log.decide_many(plan, cases, skip_recorded=True):
        sys.stdout.write(f"{decision.case_id}\n")
        sys.stdout.flush()
