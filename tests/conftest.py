"""Shared fixtures: the shipped and golden rulesets, compiled once per test session."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import vedtak

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden"
STUDY_GRANT = ROOT / "rulesets" / "study-grant"
CHILD_BENEFIT = GOLDEN / "rulesets" / "child-benefit"

sys.path.insert(0, str(ROOT / "benchmarks"))


@pytest.fixture(scope="session")
def study_plan() -> vedtak.Plan:
    return vedtak.compile(vedtak.load(STUDY_GRANT))


@pytest.fixture(scope="session")
def child_plan() -> vedtak.Plan:
    return vedtak.compile(vedtak.load(CHILD_BENEFIT))


@pytest.fixture
def keys(tmp_path):
    """A fresh Ed25519 key pair for checkpoints, made by `vedtak audit keygen`: (private, public)."""
    from cli_support import run
    prefix = tmp_path / "audit"
    assert run("audit", "keygen", "--out", prefix).exit_code == 0
    return str(prefix) + ".key", str(prefix) + ".pub"
