"""The README matches the code: its commands run as written, its library code runs, its error example is real."""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import subprocess
import textwrap
from pathlib import Path

from conftest import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")
VENV_BIN = ROOT / ".venv" / "bin"


def section(title: str) -> str:
    """The text of the README section ``## title``, up to the next ``## `` heading."""
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start:end if end != -1 else len(README)]


def fenced(text: str, lang: str) -> list[str]:
    """The fenced code blocks of one language in ``text``, dedented (blocks inside list items too)."""
    blocks = re.findall(rf"^([ \t]*)```{lang}\n(.*?)^\1```", text, flags=re.S | re.M)
    return [textwrap.dedent(body) for _, body in blocks]


def workdir(tmp_path: Path) -> Path:
    """A directory laid out as the repository is after the install step: rulesets and .venv."""
    (tmp_path / "rulesets").symlink_to(ROOT / "rulesets")
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    return tmp_path


def run(command: str, cwd: Path, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, COLUMNS="200", **(env_extra or {}))
    return subprocess.run(command, shell=True, cwd=cwd, capture_output=True, text=True, timeout=300, env=env)


def test_two_commands_and_then_look_around_run_as_written(tmp_path):
    """The main command (after its install step) and every "Then look around" command exit 0 as written."""
    text = section("Two commands")
    first = fenced(text, "sh")[0].strip()
    steps = [s.strip() for s in first.split(" && ")]
    assert steps[0].startswith("python3 -m venv") and "pip install" in steps[1]
    cwd = workdir(tmp_path)
    for step in steps[2:]:  # the install is what the test environment already did
        assert step.startswith(".venv/bin/vedtak "), step
        result = run(step, cwd)
        assert result.returncode == 0, (step, result.stdout, result.stderr)
    look = text[text.index("Then look around"):]
    look = look[:look.index("\n\n")]
    commands = [c for c in re.findall(r"`([^`]+)`", look.replace("\n", " "))]
    assert len(commands) == 4
    for command in commands:
        assert command.startswith(".venv/bin/vedtak "), f"not runnable as written: {command}"
        result = run(command, cwd)
        assert result.returncode == 0, (command, result.stdout, result.stderr)
        assert result.stdout.strip(), command
        assert "Traceback" not in result.stderr


def test_library_code_blocks_run_as_written(monkeypatch):
    """Each Python block of "Use it as a library" runs in order; each block's first print shows its comment."""
    blocks = fenced(section("Use it as a library"), "python")
    assert len(blocks) == 2
    monkeypatch.chdir(ROOT)
    namespace: dict = {}
    for block in blocks:
        wanted = next(line.split("#", 1)[1].strip() for line in block.splitlines()
                      if line.startswith("print(") and "#" in line)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(block, "<README.md>", "exec"), namespace)  # noqa: S102 - the README's own code
        assert out.getvalue().splitlines()[0] == wanted


def test_broken_ruleset_example_is_a_shipped_line_and_the_exact_cli_output(tmp_path):
    """The README's broken-ruleset example quotes a line of the shipped ruleset, and `vedtak check` on the
    ruleset with that typo prints exactly the block the README shows (standard error, exit 1)."""
    text = section("Command line")
    intro = text[text.index("A broken ruleset is reported like this"):]
    m = re.search(r"mistyped as `(\w+)` on line (\d+) of `([^`]+)`,\s*`([^`]+)`, then\s*`([^`]+)`",
                  intro)
    assert m, "the example's sentence changed; update this test with it"
    typo, lineno, path, original, command = m.group(1), int(m.group(2)), m.group(3), m.group(4), m.group(5)
    word = re.search(r"were `(\w+)`", intro).group(1)
    shipped = (ROOT / path).read_text(encoding="utf-8").splitlines()
    assert shipped[lineno - 1] == original, "the README quotes a line that is not in the shipped ruleset"
    expected = fenced(intro, "")[0]
    copy = tmp_path / path
    copy.parent.mkdir(parents=True)
    shutil.copy(ROOT / path, copy)
    lines = copy.read_text(encoding="utf-8").splitlines(keepends=True)
    lines[lineno - 1] = re.sub(rf"\b{word}\b", typo, lines[lineno - 1], count=1)
    copy.write_text("".join(lines), encoding="utf-8")
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    result = run(".venv/bin/" + command, tmp_path)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == expected
