"""Click commands for the caseworkers' queue: list, show, claim, decide, review."""

from __future__ import annotations

import json
import sys

import click
from rich.table import Table

from vedtak.audit.record import record_ref
from vedtak.decision import canonical_json
from vedtak.queue import STATUSES, QueueError, claim, decide, get_item, list_items, request_review
from vedtak.replay import explain_record

from .audit import _case_ids, _open
from .common import EXIT_FINDINGS, console, say


def _fail(exc: QueueError) -> None:
    say(f"refused: {exc}", style="bold red", err=True)
    sys.exit(EXIT_FINDINGS)


@click.group("queue")
def queue() -> None:
    """The caseworkers' queue: referrals to decide by hand, and reviews of automated decisions."""


@queue.command("list")
@click.argument("db")
@click.option("--queue", "queue_name", help="Only this queue.")
@click.option("--status", type=click.Choice(STATUSES), help="Only items with this status.")
@click.option("--json", "as_json", is_flag=True, help="Print the items as JSON.")
def list_cmd(db: str, queue_name: str | None, status: str | None, as_json: bool) -> None:
    """List work items, most urgent first.

    Example: vedtak queue list decisions.db --queue general --status open
    """
    with _open(db) as store:
        items = list_items(store, queue=queue_name, status=status)
    if as_json:
        click.echo(canonical_json([i.to_dict() for i in items]))
        return
    table = Table("id", "queue", "status", "case", "reason", "proposed", "created", "assignee", box=None)
    for i in items:
        proposed = i.proposed["outcome"] if i.proposed and i.proposed.get("outcome") else ""
        table.add_row(str(i.id), i.queue, i.status, str(i.case_id), i.reason_code, proposed, i.created_at[:19],
                      i.assignee or "")
    console().print(table)
    say(f"{len(items)} item{'s' if len(items) != 1 else ''}")


@queue.command("show")
@click.argument("db")
@click.argument("item_id", type=int)
def show(db: str, item_id: int) -> None:
    """Show a work item: why it came, the case, the explanation, and any proposed decision.

    Example: vedtak queue show decisions.db 3
    """
    with _open(db) as store:
        try:
            item = get_item(store, item_id)
        except QueueError as exc:
            _fail(exc)
        say(f"Work item {item.id} ({item.kind}) in queue {item.queue}: {item.status}"
            + (f", {item.assignee}" if item.assignee else ""), style="bold")
        say(f"Case {item.case_id}; reason {item.reason_code}: {item.reason_text}")
        if item.proposed and item.proposed.get("outcome"):
            values = ", ".join(f"{k} = {v}" for k, v in (item.proposed.get("values") or {}).items())
            say(f"Proposed decision: {item.proposed['outcome']}" + (f" ({values})" if values else ""))
        record = store.record(item.record_seq, item.record_chain) if item.record_seq else None
        if record is not None:
            say("Case data:")
            for line in json.dumps(json.loads(record.input), indent=2, ensure_ascii=False).splitlines():
                say("  " + line)
            say(f"Explanation (record {record.ref}):")
            for line in explain_record(store, record).splitlines():
                say("  " + line)


@queue.command("claim")
@click.argument("db")
@click.argument("item_id", type=int)
@click.option("--by", required=True, help="The caseworker taking the item.")
def claim_cmd(db: str, item_id: int, by: str) -> None:
    """Take an open work item; of two caseworkers claiming at once, one wins.

    Example: vedtak queue claim decisions.db 3 --by kari
    """
    with _open(db) as store:
        try:
            item = claim(store, item_id, by)
        except QueueError as exc:
            _fail(exc)
    say(f"work item {item.id} claimed by {item.assignee}")


@queue.command("decide")
@click.argument("db")
@click.argument("item_id", type=int)
@click.option("--outcome", required=True, help="One of the ruleset's outcomes.")
@click.option("--value", "values", multiple=True, metavar="NAME=VALUE",
              help="A value of the outcome, typed as the ruleset types it; repeat for each.")
@click.option("--by", required=True, help="The caseworker deciding.")
@click.option("--reason", required=True, help="The grounds for the decision, as the person concerned will read them.")
def decide_cmd(db: str, item_id: int, outcome: str, values: tuple[str, ...], by: str, reason: str) -> None:
    """Decide a work item by hand; the decision is appended to the audit chain.

    Example: vedtak queue decide decisions.db 3 --outcome grant --value amount=65000 --by kari --reason "Load documented"
    """
    parsed = {}
    for v in values:
        if "=" not in v:
            raise click.UsageError(f"--value {v}: write NAME=VALUE")
        name, _, text = v.partition("=")
        parsed[name.strip()] = text
    with _open(db) as store:
        try:
            seq = decide(store, item_id, outcome=outcome, values=parsed, by=by, reason=reason)
        except QueueError as exc:
            _fail(exc)
    say(f"work item {item_id} decided: {outcome} (audit record {seq})")


@queue.command("review")
@click.argument("db")
@click.argument("case_id")
@click.option("--by", required=True, help="Who asks for the review (a caseworker on the person's behalf).")
@click.option("--reason", required=True, help="Why a human review is asked for.")
def review(db: str, case_id: str, by: str, reason: str) -> None:
    """Ask for a human review of a case's automated decision (GDPR Art. 22(3)).

    Opens a work item; deciding it confirms or overrides the automated decision.

    Example: vedtak queue review decisions.db 1001 --by kari --reason "The applicant disputes the income"
    """
    with _open(db) as store:
        last = None
        for cid in _case_ids(case_id):
            try:
                item = request_review(store, cid, by, reason)
                break
            except QueueError as exc:
                last = exc
        else:
            _fail(last)  # type: ignore[arg-type]
    say(f"work item {item.id} opened in queue {item.queue} to review record {record_ref(item.record_seq, item.record_chain)}")
