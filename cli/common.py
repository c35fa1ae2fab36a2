"""What the commands share: exit codes, terminal-safe output, output-path checks, and loading a ruleset."""

from __future__ import annotations

import os
import re
import tempfile
import unicodedata

import click
from rich.console import Console
from rich.text import Text

import vedtak
from vedtak.errors import MAX_DIAGNOSTICS, RulesetError

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE = 0, 1, 2
EXIT_INCOMPLETE = 3  # a distributed run left partitions undone; --resume finishes it
EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143  # as a shell reports a command ended by SIGINT, SIGTERM (128 + n)

ROW_ID = click.IntRange(1, 2**63 - 1)  # a work item's or record's number: what a SQL INTEGER holds


def console(err: bool = False) -> Console:
    return Console(stderr=err, highlight=False, soft_wrap=True, emoji=False)


# -- text from data, made safe for a terminal -------------------------------------------------
# A case id, a field name or a reason text comes from whoever wrote the case file. Printed raw,
# an ESC sequence recolours or rewrites the screen, U+202E reverses what follows, a lone
# surrogate cannot be encoded at all. Every such character is shown as a visible escape.

_PLAIN = re.compile(r"[\x20-\x7e\n]*")
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})  # controls, format (bidi), surrogates, separators
_EMOJI_JOINERS = frozenset("\u200c\u200d")  # used inside words and emoji; harmless on a terminal


def _unsafe(ch: str) -> bool:
    return unicodedata.category(ch) in _UNSAFE_CATEGORIES and ch not in _EMOJI_JOINERS


def _escape(ch: str) -> str:
    n = ord(ch)
    return f"\\x{n:02x}" if n <= 0xFF else f"\\u{n:04x}" if n <= 0xFFFF else f"\\U{n:08x}"


def safe_text(value: object, *, keep_newlines: bool = False) -> str:
    r"""``value`` as text a terminal shows as written: control, bidi and format characters escaped.

    >>> safe_text("A-1\x1b[2J\u202e")
    'A-1\\x1b[2J\\u202e'
    """
    text = value if isinstance(value, str) else str(value)
    if _PLAIN.fullmatch(text) and (keep_newlines or "\n" not in text):
        return text
    return "".join(_escape(ch) if (_unsafe(ch) and not (keep_newlines and ch == "\n")) else ch for ch in text)


def safe_json(text: str) -> str:
    """JSON text (from json.dumps) with the same characters written as \\u escapes: the same JSON value.

    Real newlines and tabs in JSON text are layout (json.dumps escapes them inside strings), so they stay.
    """
    if _PLAIN.fullmatch(text):
        return text
    out = []
    for ch in text:
        if ch in "\n\t\r" or not _unsafe(ch):
            out.append(ch)
        elif ord(ch) > 0xFFFF:  # a surrogate pair, as JSON writes characters outside the BMP
            n = ord(ch) - 0x10000
            out.append(f"\\u{0xD800 + (n >> 10):04x}\\u{0xDC00 + (n & 0x3FF):04x}")
        else:
            out.append(f"\\u{ord(ch):04x}")
    return "".join(out)


def cell(value: object) -> Text:
    """A table cell showing data as written: terminal-safe, and never read as rich markup."""
    return Text(safe_text("" if value is None else value))


def echo_json(text: str) -> None:
    """Print JSON text for a pipe or a terminal alike (see safe_json)."""
    click.echo(safe_json(text))


def say(text: str, style: str | None = None, err: bool = False) -> None:
    """Print one message; any data in it is shown terminal-safe (newlines are kept as line breaks)."""
    console(err).print(Text(safe_text(text, keep_newlines=True), style=style or ""))


def load_ruleset(path: str):
    """Load a ruleset or print its diagnostics; None when it does not load."""
    try:
        return vedtak.load(path)
    except RulesetError as exc:
        for d in exc.diagnostics[:MAX_DIAGNOSTICS]:  # the first hundred say what is wrong; the count says the rest
            say(d.format(), err=True)
        n = len(exc.diagnostics)
        if n > MAX_DIAGNOSTICS:
            say(f"... and {n - MAX_DIAGNOSTICS} more problems", err=True)
        say(f"{path}: {n} problem{'s' if n != 1 else ''}; the ruleset was not loaded", style="bold red", err=True)
        return None


# -- output paths, checked before anything is opened for writing ------------------------------

def is_url(db: str) -> bool:
    return db.startswith(("postgresql://", "postgres://"))


def log_files(db: str | None) -> list[tuple[str, str]]:
    """The files a SQLite audit log lives in, each with what to call it: the database and its journals."""
    if not db or is_url(db):
        return []
    return [("the audit log", db)] + [(f"the audit log's {s} file", db + "-" + s) for s in ("wal", "journal", "shm")]


SQLITE_HEADER = b"SQLite format 3\x00"


def check_log_path(option: str, db: str | None, *, existing: bool = False) -> None:
    """Refuse, as a usage error, an audit log path that is not one: empty or :memory: (SQLite would keep the
    log nowhere), a directory, a file that is not a SQLite database, or with ``existing`` a missing or empty file.

    ``option`` names the path in messages ("--audit"); "DB" (the argument) is left out of them.
    """
    if db is None or is_url(db):
        return
    if not db.strip() or db.strip() == ":memory:":
        raise click.UsageError(f"{option} needs a file path or a postgresql:// URL, not {db!r} (SQLite would keep "
                               "that log nowhere)")
    shown = safe_text(db) if option == "DB" else f"{option} {safe_text(db)}"
    if not os.path.lexists(db):
        if existing:
            raise click.UsageError(f"no audit log at {safe_text(db)}")
        check_directory(shown, os.path.dirname(os.path.abspath(db)))  # the log is created there
        return
    if os.path.isdir(db):
        raise click.UsageError(f"{shown} is a directory, not an audit log")
    try:
        with open(db, "rb") as f:
            header = f.read(len(SQLITE_HEADER))
        pending = os.path.isfile(db + "-wal") and os.path.getsize(db + "-wal") > 0
    except OSError as exc:
        raise click.UsageError(f"cannot read the audit log {shown}: {exc.strerror or exc}") from None
    if existing and not header and not pending:
        raise click.UsageError(f"{shown} is an empty file, not a vedtak audit log")
    if header and header != SQLITE_HEADER:
        raise click.UsageError(f"{shown} is not a vedtak audit log (not a SQLite database)")
    if not existing:  # a command that writes the log: SQLite writes the file and a journal beside it
        # not opened to find out: closing a descriptor of a database drops this process's locks on it
        read_only = os.access(db, os.W_OK) is False or bool(os.statvfs(db).f_flag & getattr(os, "ST_RDONLY", 0))
        if read_only:
            raise click.UsageError(f"{shown}: the audit log cannot be written (read-only)")
        probe_directory(shown, os.path.dirname(os.path.abspath(db)))


def same_file(a: str, b: str) -> bool:
    """Whether two paths name one file: hard links, symbolic links and ./a versus a alike."""
    try:
        if os.path.exists(a) and os.path.exists(b):
            return os.path.samefile(a, b)
    except OSError:
        pass
    return os.path.realpath(a) == os.path.realpath(b)


def check_output(option: str, path: str | None, protected=(), *, directory: bool = False) -> None:
    """Refuse, as a usage error, an output path that names a file the command reads or keeps, or cannot be written.

    ``protected`` is a list of (what, path) pairs, e.g. ("the input file", "cases.jsonl"). With ``directory``
    the path is a directory to write files into (made with any missing parents).
    """
    if path is None:
        return
    shown = safe_text(path)
    for what, other in protected:
        if other and same_file(path, other):
            raise click.UsageError(f"{option} {shown} names {what} {safe_text(other)}: writing there would "
                                   "destroy it; choose another path")
    if os.path.isdir(path):
        if directory:
            if not os.access(path, os.W_OK | os.X_OK):
                raise click.UsageError(f"{option} {shown}: the directory is not writable")
            probe_directory(f"{option} {shown}", path)
            return
        raise click.UsageError(f"{option} {shown} is a directory; give a file path")
    if directory and os.path.exists(path):
        raise click.UsageError(f"{option} {shown} is a file; give a directory path")
    if os.path.exists(path):
        if not os.access(path, os.W_OK):
            raise click.UsageError(f"{option} {shown}: the file is not writable")
        probe_file(f"{option} {shown}", path)
        return
    parent = os.path.dirname(os.path.realpath(path))  # a dangling symbolic link is written through to its target
    while directory and not os.path.lexists(parent) and os.path.dirname(parent) != parent:
        parent = os.path.dirname(parent)  # an output directory is made with its missing parents
    check_directory(f"{option} {shown}", parent)


def check_directory(label: str, parent: str) -> None:
    """Refuse, as a usage error, a directory that is missing, not one, or in which no file can be created.
    ``label`` starts the message: the option and the path given ("--out x.jsonl")."""
    if not os.path.isdir(parent):
        what = "is not a directory" if os.path.exists(parent) else "does not exist"
        raise click.UsageError(f"{label}: the directory {safe_text(parent)} {what}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise click.UsageError(f"{label}: cannot create a file in {safe_text(parent)} (permission denied)")
    probe_directory(label, parent)


def probe_directory(label: str, folder: str) -> None:
    """Create and remove a file in ``folder``: what the file system really allows, which permissions alone
    do not tell (/proc, a read-only mount, a full quota; root passes every permission check)."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".vedtak-probe-", dir=folder)
    except OSError as exc:
        raise click.UsageError(f"{label}: cannot create a file in {safe_text(folder)} "
                               f"({(exc.strerror or str(exc)).lower()})") from None
    os.close(fd)
    try:
        os.unlink(probe)
    except OSError:  # pragma: no cover - a file just made in a folder that allows it can be removed
        pass


def probe_file(label: str, path: str) -> None:
    """Open an existing regular file for writing, without changing it: a read-only mount or an immutable
    file refuses here. Anything else (a device, a pipe: opening one may wait for a reader) is not opened."""
    if not os.path.isfile(path):
        return
    try:
        os.close(os.open(path, os.O_WRONLY | getattr(os, "O_NONBLOCK", 0)))
    except OSError as exc:
        raise click.UsageError(f"{label}: the file cannot be written "
                               f"({(exc.strerror or str(exc)).lower()})") from None


MIN_PII_KEY_BYTES = 16  # 128 bits: a shorter secret lets anyone holding the log guess pseudonymised values back
MAX_PII_KEY_BYTES = 64 * 1024
MAKE_PII_KEY = "make one with: head -c 32 /dev/urandom > pii.key"


def read_pii_key(path: str | None) -> bytes | None:
    """The secret in a --pii-key-file (surrounding whitespace aside), or a usage error: unreadable, over
    64 KiB (not a key; /dev/zero would never end), or under 16 bytes (128 bits), saying how to make one."""
    if path is None:
        return None
    shown = safe_text(path)
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_PII_KEY_BYTES + 1)
    except OSError as exc:
        raise click.UsageError(f"--pii-key-file {shown}: cannot read it: {exc.strerror or exc}") from None
    if len(data) > MAX_PII_KEY_BYTES:
        raise click.UsageError(f"--pii-key-file {shown} holds more than {MAX_PII_KEY_BYTES // 1024} KiB: not a "
                               f"key file; {MAKE_PII_KEY}")
    key = data.strip()
    if len(key) < MIN_PII_KEY_BYTES:
        raise click.UsageError(f"--pii-key-file {shown} holds {len(key)} byte{'s' if len(key) != 1 else ''} of key; "
                               f"a key needs at least {MIN_PII_KEY_BYTES} bytes (128 bits) of secret: {MAKE_PII_KEY}")
    return key


def write_output(option: str, path: str, text: str) -> None:
    """Write a whole output file; a full disk or a vanished directory is a message (exit 1), not a traceback."""
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as exc:
        raise click.ClickException(f"cannot write {option} {safe_text(path)}: {exc.strerror or exc}") from None


def given(ctx: click.Context, name: str) -> bool:
    """Whether the user set an option (on the command line or in the environment), not its default."""
    source = ctx.get_parameter_source(name)
    return source is not None and source not in (click.core.ParameterSource.DEFAULT,
                                                 click.core.ParameterSource.DEFAULT_MAP)
