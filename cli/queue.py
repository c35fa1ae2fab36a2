"""Click commands for the caseworkers' queue: list, show, claim, release, assign, decide, review, supervisors."""

from __future__ import annotations

import json
import sys

import click

from vedtak.audit.record import record_ref
from vedtak.evaluation.cases import LONE_SURROGATE
from vedtak.evaluation.decision import canonical_json
from vedtak.audit.queue import (STATUSES, QueueError, accepted, assign, change_supervisors, claim, decide, describe_kind,
                          earlier_review, get_item, list_items, release, request_review)
from vedtak.audit.replay import explain_record

from .audit import _case_ids, _open
from .common import EXIT_FINDINGS, ROW_ID, console, echo_json, safe_json, safe_text, say
from .tables import print_table


class _Text(click.ParamType):
    """Text a caseworker types, as it goes into the log: UTF-8 only. A byte that is not UTF-8 in an
    argument (Python keeps it as a lone surrogate) is a usage error here, not a traceback at the log."""

    name = "text"

    def convert(self, value, param, ctx):
        if isinstance(value, str) and not value.isascii() and LONE_SURROGATE.search(value):
            self.fail(f"{safe_text(value)!s} holds a byte that is not UTF-8 text; type it again as UTF-8", param, ctx)
        return value


TEXT = _Text()


def _fail(exc: QueueError) -> None:
    say(f"refused: {exc}", style="bold red", err=True)
    sys.exit(EXIT_FINDINGS)


@click.group("queue")
def queue() -> None:
    """The caseworkers' queue: referrals to decide by hand, and reviews of automated decisions."""


@queue.command("list")
@click.argument("db")
@click.option("--queue", "queue_name", type=TEXT, help="Only this queue.")
@click.option("--status", type=click.Choice(STATUSES), help="Only items with this status.")
@click.option("--all", "show_all", is_flag=True, help="Closed items (decided, superseded) too.")
@click.option("--json", "as_json", is_flag=True, help="Print the items as JSON.")
def list_cmd(db: str, queue_name: str | None, status: str | None, show_all: bool, as_json: bool) -> None:
    """List work items still to do (open or claimed), most urgent first; --all lists closed ones too.

    On a terminal the items are a table; piped or redirected, one tab-separated line per item
    after a header line, every value in full.

    Example: vedtak queue list decisions.db --queue general --status open
    """
    with _open(db, read_only=True) as store:
        items = list_items(store, queue=queue_name, status=status, open_only=not show_all)
    if as_json:
        echo_json(canonical_json([i.to_dict() for i in items]))
        return
    rows = []
    for i in items:
        proposed = i.proposed["outcome"] if i.proposed and i.proposed.get("outcome") else ""
        rows.append((i.id, i.queue, i.status, i.case_id, i.reason_code, proposed, i.created_at[:19], i.assignee or ""))
    print_table(("id", "queue", "status", "case", "reason", "proposed", "created", "assignee"), rows)
    closed = "" if show_all or status else " still to do (--all: closed ones too)"
    # piped, the count goes to standard error: standard output holds only the rows
    say(f"{len(items)} item{'s' if len(items) != 1 else ''}{closed}", err=not console().is_terminal)


@queue.command("show")
@click.argument("db")
@click.argument("item_id", type=ROW_ID)
def show(db: str, item_id: int) -> None:
    """Show a work item: why it came, the case, the explanation, any proposed decision, what
    `queue decide` accepts for it (outcomes, and their values with types), and who claimed,
    released or was assigned it.

    Example: vedtak queue show decisions.db 3
    """
    with _open(db, read_only=True) as store:
        try:
            item = get_item(store, item_id)
        except QueueError as exc:
            _fail(exc)
        say(f"Work item {item.id} ({item.kind}) in queue {item.queue}: {item.status}"
            + (f", {item.assignee}" if item.assignee else ""), style="bold")
        say(f"Case {item.case_id}; reason {item.reason_code}: {item.reason_text}")
        earlier = earlier_review(store, (item.record_seq, item.record_chain), before=item.id) \
            if item.kind == "review" and item.record_seq else None
        if earlier is not None:
            say(f"Follows review work item {earlier.id}, {earlier.status}"
                + (f" in record {earlier.decided_seq}" if earlier.decided_seq else ""))
        if item.proposed and item.proposed.get("outcome"):
            values = ", ".join(f"{k} = {v}" for k, v in (item.proposed.get("values") or {}).items())
            say(f"Proposed decision: {item.proposed['outcome']}" + (f" ({values})" if values else ""))
        record = store.record(item.record_seq, item.record_chain) if item.record_seq else None
        if record is not None:
            say("Case data:")
            # escaped as JSON, and split only at its own newlines: the case may hold U+2028, ESC, U+202E
            for line in safe_json(json.dumps(json.loads(record.input), indent=2, ensure_ascii=False)).split("\n"):
                say("  " + line)
            say(f"Explanation (record {record.ref}):")
            for line in explain_record(store, record).split("\n"):
                say("  " + line)
        if item.status in ("open", "claimed"):
            outcomes = accepted(store, item)
            if outcomes:
                say("Decide with (vedtak queue decide ... --outcome OUTCOME --value NAME=VALUE):")
                for outcome, values in outcomes.items():
                    say(f"  {outcome}: " + ("; ".join(f"--value {name}=... ({describe_kind(kind)})"
                                                      for name, kind in values.items()) or "no values"))
        events = store.work_item_events(item.id)
        if events:
            say("History:")
            for at, action, actor, assignee in events:
                say(f"  {at[:19]} {action} by {actor}" + (f" to {assignee}" if action == "assigned" else ""))


@queue.command("claim")
@click.argument("db")
@click.argument("item_id", type=ROW_ID)
@click.option("--by", type=TEXT, required=True, help="The caseworker taking the item.")
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


@queue.command("release")
@click.argument("db")
@click.argument("item_id", type=ROW_ID)
@click.option("--by", type=TEXT, required=True, help="The caseworker holding the item (or a supervisor).")
def release_cmd(db: str, item_id: int, by: str) -> None:
    """Put a claimed work item back in its queue, open for anyone to claim.

    Only the caseworker holding it, or a supervisor, may release it.

    Example: vedtak queue release decisions.db 3 --by kari
    """
    with _open(db) as store:
        try:
            release(store, item_id, by)
        except QueueError as exc:
            _fail(exc)
    say(f"work item {item_id} released by {by}: open again")


@queue.command("assign")
@click.argument("db")
@click.argument("item_id", type=ROW_ID)
@click.option("--to", "to", type=TEXT, required=True, help="The caseworker who gets the item.")
@click.option("--by", type=TEXT, required=True, help="The supervisor assigning it (named with `queue supervisors`).")
def assign_cmd(db: str, item_id: int, to: str, by: str) -> None:
    """Give an open or claimed work item to a caseworker, as a supervisor; it is then claimed by them.

    Example: vedtak queue assign decisions.db 3 --to ola --by siri
    """
    with _open(db) as store:
        try:
            item = assign(store, item_id, to, by)
        except QueueError as exc:
            _fail(exc)
    say(f"work item {item.id} assigned to {item.assignee} by {by}")


@queue.command("supervisors")
@click.argument("db")
@click.option("--add", "add", type=TEXT, metavar="NAME", help="Name a supervisor.")
@click.option("--remove", "remove", type=TEXT, metavar="NAME", help="Un-name a supervisor.")
@click.option("--by", type=TEXT, help="Who makes the change (a supervisor, once one is named).")
def supervisors_cmd(db: str, add: str | None, remove: str | None, by: str | None) -> None:
    """List the log's supervisors, who may assign work items; or name or un-name one.

    While none is named, anyone may name the first; after that only a supervisor may change
    the list, and the last supervisor cannot be removed.

    Example: vedtak queue supervisors decisions.db --add siri --by siri
    """
    if add and remove:
        raise click.UsageError("give --add or --remove, not both")
    if (add or remove) and not by:
        raise click.UsageError("say who makes the change (--by)")
    if by and not (add or remove):
        raise click.UsageError("--by goes with --add NAME or --remove NAME")
    with _open(db) as store:
        if not (add or remove):
            names = store.supervisors()
            say(", ".join(names) if names
                else "no supervisor is named (vedtak queue supervisors DB --add NAME --by NAME)")
            return
        try:
            after = change_supervisors(store, add or remove, add=bool(add), by=by)  # type: ignore[arg-type]
        except QueueError as exc:
            _fail(exc)
    say(f"supervisors: {', '.join(after)}")


@queue.command("decide")
@click.argument("db")
@click.argument("item_id", type=ROW_ID)
@click.option("--outcome", type=TEXT, required=True, help="One of the ruleset's outcomes.")
@click.option("--value", "values", type=TEXT, multiple=True, metavar="NAME=VALUE",
              help="A value of the outcome, typed as the ruleset types it; repeat for each.")
@click.option("--by", type=TEXT, required=True, help="The caseworker deciding.")
@click.option("--reason", type=TEXT, required=True, help="The grounds for the decision, as the person concerned will read them.")
def decide_cmd(db: str, item_id: int, outcome: str, values: tuple[str, ...], by: str, reason: str) -> None:
    """Decide a work item by hand; the decision is appended to the audit chain.

    Example: vedtak queue decide decisions.db 3 --outcome grant --value amount=65000 --by kari --reason "Load documented"
    """
    parsed: dict[str, str] = {}
    for v in values:
        if "=" not in v:
            raise click.UsageError(f"--value {v}: write NAME=VALUE")
        name, _, text = v.partition("=")
        if name.strip() in parsed:
            raise click.UsageError(f"--value {name.strip()} is given twice ({name.strip()}={parsed[name.strip()]} and "
                                   f"{v}); give each value once")
        parsed[name.strip()] = text
    with _open(db) as store:
        try:
            seq = decide(store, item_id, outcome=outcome, values=parsed, by=by, reason=reason)
        except QueueError as exc:
            _fail(exc)
    say(f"work item {item_id} decided: {outcome} (audit record {seq})")


@queue.command("review")
@click.argument("db")
@click.argument("case_id", type=TEXT)
@click.option("--by", type=TEXT, required=True, help="Who asks for the review (a caseworker on the person's behalf).")
@click.option("--reason", type=TEXT, required=True, help="Why a human review is asked for.")
def review(db: str, case_id: str, by: str, reason: str) -> None:
    """Ask for a human review of a case's current decision (GDPR Art. 22(3)).

    The current decision is the case's latest one, automated or by a caseworker (an earlier
    review's among them). Opens a work item; deciding it confirms or overrides that decision.
    At most one review of a case is open at a time: a second request while one is open is
    refused, naming it; a later review names the earlier one.

    Example: vedtak queue review decisions.db 1001 --by kari --reason "The applicant disputes the income"
    """
    with _open(db) as store:
        last = None
        for cid in _case_ids(case_id):
            try:
                item = request_review(store, cid, by, reason)
                break
            except QueueError as exc:
                if exc.code != "nothing_to_review":  # the case was found: this is the answer
                    _fail(exc)
                last = exc
        else:
            _fail(last)  # type: ignore[arg-type]
        earlier = earlier_review(store, (item.record_seq, item.record_chain), before=item.id)
    follows = "" if earlier is None else (f"; it follows review work item {earlier.id}, {earlier.status}"
                                          + (f" in record {earlier.decided_seq}" if earlier.decided_seq else ""))
    say(f"work item {item.id} opened in queue {item.queue} to review record "
        f"{record_ref(item.record_seq, item.record_chain)}{follows}")
