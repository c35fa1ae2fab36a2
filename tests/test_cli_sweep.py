"""A sweep over the command table: every command, given nonsense paths, fails cleanly (exit 1 or 2, no traceback).

Nonsense is a missing path, a directory, an empty file, binary garbage, an unreadable file (root reads
it: then it is garbage too) and a dangling symbolic link. First every argument at once, then, with a
real log, ruleset and files, one file parameter at a time. Commands added later are swept too.
"""

from __future__ import annotations

import os

import click
import pytest

from vedtak.cli.main import main

from conftest import STUDY_GRANT
from test_cli_slips import checkpoint, db, run  # noqa: F401 - fixtures shared with the slips tests (keys: conftest)

SG = str(STUDY_GRANT)


# -- a sweep: every command, given nonsense paths ---------------------------------------------------

def _leaf_commands(group: click.Group = main, words: tuple = ()):
    for name, cmd in sorted(group.commands.items()):
        if isinstance(cmd, click.Group):
            yield from _leaf_commands(cmd, words + (name,))
        else:
            yield words + (name,), cmd


NONSENSE = ["missing", "directory", "empty", "garbage", "unreadable", "dangling-link"]


def _nonsense(tmp_path, kind: str) -> str:
    """A path of one nonsense kind (unreadable is readable by root: then it is garbage too)."""
    path = tmp_path / kind
    if kind == "missing":
        return str(tmp_path / "no-such-dir" / "missing")
    if kind == "directory":
        path.mkdir()
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind in ("garbage", "unreadable"):
        path.write_bytes(b"\xff\xfe\x00SQLite\x1b[2J" + bytes(range(256)) * 4)
        if kind == "unreadable":
            path.chmod(0)
    elif kind == "dangling-link":
        os.symlink(tmp_path / "no-such-dir" / "target", path)
    return str(path)


def _value(param: click.Parameter, path: str) -> str:
    if isinstance(param.type, (click.types.IntParamType, click.IntRange)):
        return "1"
    if isinstance(param.type, click.Choice):
        return str(param.type.choices[0])
    return path


def _nonsense_args(command: click.Command, path: str) -> list[str]:
    """Every argument and required option given the nonsense path (numbers and choices a valid value)."""
    args: list[str] = []
    for param in command.params:
        if isinstance(param, click.Argument):
            args.append(_value(param, path))
        elif param.required:
            args += [param.opts[0], _value(param, path)]
    return args


@pytest.mark.parametrize("kind", NONSENSE)
@pytest.mark.parametrize("words", [pytest.param(w, id=" ".join(w)) for w, _ in _leaf_commands()])
def test_every_command_given_nonsense_paths_fails_cleanly(tmp_path, words, kind):
    """Every command, its paths missing, a directory, empty, unreadable, garbage or a dangling link: exit 1 or 2."""
    command = main
    for w in words:
        command = command.commands[w]  # type: ignore[attr-defined]
    path = _nonsense(tmp_path, kind)
    try:
        r = run(*words, *_nonsense_args(command, path), input="")
    finally:
        if kind == "unreadable":
            os.chmod(path, 0o600)
    assert r.exit_code in (1, 2), (words, kind, r.output)



OUTPUT_SAFE_KINDS = ("missing", "directory", "dangling-link")  # an empty or garbage file is a fine output to replace
FILE_NAMES = ("case", "cases", "prefix", "key", "checkpoint", "public_key", "pii_key_file", "out", "summary_json")


def _file_params():
    """(command words, parameter name, is output) for every file a command reads or writes besides log and ruleset."""
    for words, command in _leaf_commands():
        for param in command.params:
            if param.name in FILE_NAMES:
                t = param.type
                output = (isinstance(t, click.File) and "w" in t.mode) or param.name in ("prefix", "out", "summary_json")
                yield words, param.name, output


@pytest.fixture
def valid(tmp_path, db, keys, checkpoint):
    """A valid value for every file parameter, and the extra arguments some of them need."""
    pii_key = tmp_path / "pii.key"
    pii_key.write_text("a secret of at least 16 bytes")
    return {"case": str(STUDY_GRANT / "case.json"), "cases": str(STUDY_GRANT / "cases.jsonl"),
            "prefix": str(tmp_path / "fresh"), "key": keys[0], "checkpoint": checkpoint, "public_key": keys[1],
            "pii_key_file": str(pii_key), "out": str(tmp_path / "out.new"), "summary_json": str(tmp_path / "s.json")}


def _in_context_args(command: click.Command, target: str, path: str, db: str, valid: dict) -> list[str]:
    """The command with a real log and ruleset, valid files, and the nonsense path for the one ``target``."""
    args: list[str] = []
    plain = {"case_id": "1001", "item_id": "1", "by": "kari", "reason": "because", "outcome": "grant", "to": "ola"}
    for param in command.params:
        name = param.name or ""
        if name in ("db", "audit_db"):
            value = db
        elif name in ("ruleset", "rulesets"):
            value = SG
        elif name == target:
            value = path
        elif name in FILE_NAMES and (isinstance(param, click.Argument) or param.required or target == "checkpoint"
                                     or (name == "pii_key_file" and target in ("case", "cases"))):
            value = valid[name]
        elif isinstance(param, click.Argument) or param.required:
            value = plain.get(name) or _value(param, "x")
        else:
            continue
        args += [value] if isinstance(param, click.Argument) else [param.opts[0], value]
    if target == "pii_key_file" or "--pii-key-file" in args:
        args += ["--pii", "pseudonymise"]
    if command.name == "run" and target != "workers":
        args += ["--workers", "1"]
    return args


@pytest.mark.parametrize("kind", NONSENSE)
@pytest.mark.parametrize("words,target,output", [pytest.param(w, n, o, id=f"{' '.join(w)} {n}")
                                                 for w, n, o in _file_params()])
def test_every_file_given_nonsense_in_context_fails_cleanly(tmp_path, db, valid, words, target, output, kind):
    """With a real log, ruleset and files, one file a command reads or writes given as nonsense: exit 1 or 2.

    An output may be an existing empty or garbage file (it is replaced), so outputs are tried only with paths
    that cannot be written: in a missing directory, a directory, a dangling link to a missing directory.
    """
    if output and kind not in OUTPUT_SAFE_KINDS:
        pytest.skip("an existing file is a valid output")
    if target == "pii_key_file" and kind in ("garbage", "unreadable"):
        pytest.skip("any bytes are a valid secret key (and root reads an unreadable file)")
    if target == "cases" and kind == "empty":
        pytest.skip("an empty batch is a valid batch: read 0, exit 0")
    command = main
    for w in words:
        command = command.commands[w]  # type: ignore[attr-defined]
    path = _nonsense(tmp_path, kind)
    args = _in_context_args(command, target, path, db, valid)
    before = open(db, "rb").read()
    try:
        r = run(*words, *args, input="")
    finally:
        if kind == "unreadable":
            os.chmod(path, 0o600)
    assert r.exit_code in (1, 2), (words, args, r.output)
    if output:
        assert open(db, "rb").read() == before  # refused before the log was written


def _number_params():
    for words, command in _leaf_commands():
        for param in command.params:
            if isinstance(param.type, (click.types.IntParamType, click.types.FloatParamType)):
                yield words, param.name


@pytest.mark.parametrize("number", ["-1", "0", "99999999999999999999999", "1e999"])
@pytest.mark.parametrize("words,target", [pytest.param(w, n, id=f"{' '.join(w)} {n}") for w, n in _number_params()])
def test_every_number_given_nonsense_fails_cleanly(tmp_path, db, valid, words, target, number):
    """Every number a command takes (ids, limits, workers, sizes) given -1, 0, a 23-digit number or 1e999:
    exit 2 when out of range, and never a traceback (a number in range may succeed: exit 0 or 1)."""
    command = main
    for w in words:
        command = command.commands[w]  # type: ignore[attr-defined]
    args = _in_context_args(command, target, number, db, valid)
    r = run(*words, *args, input="")
    assert r.exit_code in (0, 1, 2), (words, args, r.output)
    if number in ("-1", "1e999"):
        assert r.exit_code == 2, (words, args, r.output)
