"""A writer process for the concurrency test: appends decisions to a shared audit log."""

import sys

import vedtak
from vedtak.audit import AuditLog

url, ruleset, worker, count, batch = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent.parent / "benchmarks"))
from workload import generate  # noqa: E402

plan = vedtak.compile(ruleset)
cases = generate(count, seed=worker)
for c in cases:
    c["case_id"] = worker * 100000 + c["case_id"]
with AuditLog.open(url, batch_size=batch) as log:
    for _ in log.decide_many(plan, cases):
        pass
