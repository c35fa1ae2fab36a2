"""Verifying a log's distributed runs: every partition chain and every row of ``audit_runs`` and
``audit_chains`` must be what a run's manifest record on the main chain committed to.

A manifest commits to each of its run's partition chains (record count, last hash, spec and
summary) and to the run's registration (run key and start time; its spec is the manifest's
input). A run without a manifest is ``unfinished`` (a failure: nothing commits to its records
yet; ``--resume`` finishes it), and a chain of no registered run is ``inserted``. Manifests
written before they committed to specs, summaries and the registration are checked for
what they hold.
"""

from __future__ import annotations

import json

from .record import sha256
from ..evaluation.decision import canonical_json


def _manifest_problem(data: dict) -> str | None:
    if type(data.get("run_id")) is not str or not isinstance(data.get("chains"), list):
        return "it names no run or no chains"
    for part in data["chains"]:
        if not isinstance(part, dict) or type(part.get("chain")) is not str or type(part.get("records")) is not int \
                or type(part.get("head")) is not str or type(part.get("partition")) is not int:
            return "a chain it lists is not named as the engine writes it"
    return None


def check_runs(store, facts, ends: dict, heads: dict, report, add, adder, other) -> None:
    """Check every run and partition chain against the manifests in ``facts``; ``ends``: chain ->
    (records, last seq, last hash) as verified; ``heads``: chain -> its :class:`ChainInfo`."""
    runs = {row[0]: row for row in store.run_rows()}
    listed: set[str] = set()
    manifested: set[str] = set()
    for seq, data, spec_text in facts.manifests:
        report.runs += 1
        why = _manifest_problem(data)
        if why is not None:
            add(seq, "edited", f"manifest record {seq} was forged or changed: {why}")
            continue
        run_id = data["run_id"]
        manifested.add(run_id)
        row = runs.get(run_id)
        if row is None:
            add(seq, "partition", f"manifest record {seq}: run {run_id} is missing from audit_runs")
        else:
            _check_registration(seq, data, spec_text, row, add)
        for part in data["chains"]:
            name = part["chain"]
            listed.add(name)
            committed = (part["records"], part["records"], part["head"])
            if name not in ends:
                add(seq, "partition", f"manifest record {seq} of run {run_id}: partition chain {name} "
                    f"({part['records']} records) is missing from the log")
                continue
            if ends[name] != committed:
                count, _, end_hash = ends[name]
                add(seq, "partition", f"manifest record {seq} of run {run_id}: partition chain {name} has "
                    f"{count} records ending in {end_hash[:16]}, the manifest committed to {part['records']} "
                    f"ending in {part['head'][:16]}")
            info = heads.get(name)
            if info is None:
                continue
            found = {"run_id": info.run_id, "partition": info.part, "spec": info.spec, "done": info.done}
            wanted = {"run_id": run_id, "partition": part["partition"], "spec": part.get("spec", info.spec),
                      "done": part.get("done", info.done)}
            for column, value in found.items():
                if value != wanted[column]:
                    other(f"partition chain {name}", "edited", f"column {column if column != 'partition' else 'part'}"
                          f" of partition chain {name} in audit_chains was changed ({_short(value)}; manifest "
                          f"record {seq} committed to {_short(wanted[column])})")
                    break
    for run_id, row in runs.items():
        if row[4] is not None and run_id not in manifested:
            other(f"run {run_id}", "partition", f"run {run_id} is listed as finished by record {row[4]}, "
                  "which is no manifest of it")
    by_run: dict[str, list[str]] = {}
    for name in sorted(set(ends) - listed):
        info = heads.get(name)
        run_id = info.run_id if info is not None else name.split("/")[0]
        by_run.setdefault(run_id, []).append(name)
    for run_id in sorted(set(runs) - manifested):
        by_run.setdefault(run_id, [])
    for run_id, names in sorted(by_run.items()):
        records = sum(ends[n][0] for n in names)
        if run_id in runs and runs[run_id][4] is None:
            report.unfinished.append(run_id)
            other(f"run {run_id}", "unfinished", f"run {run_id} has no manifest: nothing commits to its "
                  f"{len(names)} partition chains ({records} records) yet; it is still running, or was "
                  "interrupted (vedtak run --resume finishes it)")
        else:
            for name in names:
                adder(name)(1, "inserted", f"the chain's {ends[name][0]} records belong to no registered run "
                            "and no manifest commits to them")


def _check_registration(seq: int, data: dict, spec_text: str, row: tuple, add) -> None:
    """The run's row in audit_runs against its manifest record (whose input is the run's spec)."""
    run_id, run_key, spec, started_at, manifest_seq = row
    try:
        unnamed = canonical_json({k: v for k, v in json.loads(spec_text).items() if k != "run_id"})
    except (ValueError, AttributeError):
        unnamed = None
    checks = (("manifest_seq", manifest_seq if manifest_seq is None else int(manifest_seq), seq),
              ("spec", spec, spec_text),
              ("run_key", run_key, data.get("run_key", sha256(unnamed) if unnamed is not None else run_key)),
              ("started_at", started_at, data.get("started_at", started_at)))
    for column, value, wanted in checks:
        if value != wanted:
            add(seq, "partition", f"manifest record {seq}: column {column} of run {run_id} in audit_runs was "
                f"changed ({_short(value)}; the manifest committed to {_short(wanted)})")
            return


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
