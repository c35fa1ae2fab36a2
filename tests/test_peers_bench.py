"""The peer benchmark's engines (benchmarks/peers.py): built once, and deciding as vedtak does."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import vedtak

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCH))

from workload import generate, if_chain, vedtak_result  # noqa: E402

zen = pytest.importorskip("zen")
import peers  # noqa: E402

CASES = generate(200, seed=14)


@pytest.fixture(scope="module")
def vedtak_terms() -> list[tuple[str, str, int]]:
    plan = vedtak.compile(vedtak.load(BENCH.parent / "rulesets" / "study-grant"))
    return [vedtak_result(plan.decide(c)) for c in CASES]


def test_zen_peer_compiles_the_graph_once(monkeypatch):
    """The zen peer's engine gets its graph once: no loader callback runs per evaluate (a static
    loader, or a callback called at most once for 200 evaluates)."""
    built, calls = [], []
    real = zen.ZenEngine

    def counting_engine(options=None):
        options = dict(options or {})
        loader = options.get("loader")
        if callable(loader):
            options["loader"] = lambda key: (calls.append(key), loader(key))[1]
        built.append(options)
        return real(options)

    monkeypatch.setattr(zen, "ZenEngine", counting_engine)
    decide = peers.make_zen()
    for c in CASES:
        decide(c)
    assert len(built) == 1
    assert len(calls) <= 1
    if not calls:
        assert built[0]["loader"]["type"] == "static"


def test_zen_peer_agrees_with_vedtak(vedtak_terms):
    """zen-engine, built as the benchmark builds it, gives vedtak's outcome, reason and amount on
    every one of 200 generated cases (and so does the hand-written if-chain)."""
    decide = peers.make_zen()
    assert [decide(c) for c in CASES] == vedtak_terms
    assert [if_chain(c) for c in CASES] == vedtak_terms


def test_loader_callback_row_counts_one_load_per_evaluate():
    """The benchmark's misuse row (a loader callback returning the graph's text) really reloads: its
    counter shows one loader call per evaluate, the figure bench_peers.py prints."""
    decide = peers.make_zen_reloading()
    for c in CASES[:50]:
        decide(c)
    assert decide.loads == 50


def test_durable_peer_agrees_with_vedtak_in_one_session(vedtak_terms):
    """durable-rules used directly, one ruleset and one session for every case, gives vedtak's terms
    on every one of 200 cases: each result is matched to its own event, none carried over."""
    pytest.importorskip("durable")
    decide = peers.make_durable()
    assert [decide(c) for c in CASES] == vedtak_terms
