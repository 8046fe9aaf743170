"""What every `twin` command shares: the consoles, the one way to fail, Ctrl-C handling, and the options that
several commands take (broker and TLS, store, line, durations), each defined once."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, Optional, TypeVar

import typer
from rich.console import Console

if TYPE_CHECKING:  # the scenario model and the bus load only when a command needs them (`twin --help` stays fast)
    from rich.progress import Progress
    from rich.table import Table

    from sensors.bus.broker import BrokerURL
    from twin.scenario import Scenario

T = TypeVar("T")


def _console(stderr: bool) -> Console:
    """A console on stdout or stderr. Plain text by default: paths, names, values and messages from the bus print as
    they are (a folder 'plant[x]' is not markup, ':b:' no emoji); the few styled words say markup=True and escape
    every value beside them. Where the output is no terminal (a file, a pipe, CI's log) and COLUMNS is unset, lines
    as wide as a table needs (250 columns): rich would cut them at 80, a score of 1.085e+05 printed as '1.08…'."""
    stream = sys.stderr if stderr else sys.stdout
    wide = "COLUMNS" not in os.environ and not (hasattr(stream, "isatty") and stream.isatty())
    return Console(stderr=stderr, markup=False, emoji=False, width=250 if wide else None)


out_console = _console(stderr=False)
err_console = _console(stderr=True)

# options several commands take, written once
BrokerOpt = Annotated[str, typer.Option(help="mqtt://[user:pass@]host:port or mqtts://...")]
CaOpt = Annotated[Optional[Path], typer.Option(help="CA certificate (PEM) for mqtts://")]
CertOpt = Annotated[Optional[Path], typer.Option(help="client certificate (PEM) for mqtts://")]
KeyOpt = Annotated[Optional[Path], typer.Option(help="client key (PEM) for mqtts://")]
LineOpt = Annotated[str, typer.Option(help="site/area/line, or +/+/+ for every line")]
ClusterOpt = Annotated[Optional[str], typer.Option(help="a running Dask scheduler, tcp://HOST:8786 (default: "
                                                    "$LINETWIN_CLUSTER, else --jobs local processes)")]
Jobs = Annotated[Optional[int], typer.Option(min=1, help="local worker processes (default: one per core)")]
StoreOpt = Annotated[Optional[str], typer.Option(help="for twin runs: the store, if not the one the run wrote")]


def print_table(table: Table) -> None:
    """A result table on stdout; a value wider than its column on a narrow terminal wraps within its cell (rich would
    cut it: a NASA score of 1.08e+05 printed as '1.08…')."""
    for column in table.columns:
        column.overflow = "fold"
    out_console.print(table)


def repeated(values: Sequence[str]) -> str | None:
    """The first value given more than once (an alternative, a policy), None if each is given once."""
    return next((v for v in values if values.count(v) > 1), None)


def fail(message: str, code: int = 2) -> NoReturn:
    """Print a user-facing error (no traceback) and exit non-zero."""
    from rich.text import Text

    # the message verbatim: names such as a column "s[2]" are not read as markup
    err_console.print(Text.assemble(("error:", "bold red"), " ", message), highlight=False, soft_wrap=True)
    raise typer.Exit(code)


class LineProgress:
    """Progress as plain lines (one per task at most every 10 s, and when it is done) for output that is not a
    terminal: a log file or CI sees training or a run advance, where a live bar would show nothing."""

    def __init__(self, percent: bool = False) -> None:
        self.percent = percent
        self.tasks: dict[int, list[Any]] = {}  # description, total, when last printed

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def add_task(self, description: str, total: float | None = None, **fields: str) -> int:
        self.tasks[len(self.tasks)] = [description, total, 0.0]
        return len(self.tasks) - 1

    def update(self, task: int, completed: float | None = None, total: float | None = None, note: str = "") -> None:
        if total is not None:
            self.tasks[task][1] = total
        desc, total, last = self.tasks[task]
        now = time.monotonic()
        if note == "done" or now - last >= 10 or (completed is not None and completed == total):
            self.tasks[task][2] = now
            done = ("" if completed is None or not total else f"{completed / total:.0%}" if self.percent
                    else f"{completed:g}/{total:g}")
            err_console.print(f"{desc}: {' '.join(filter(None, (done, note)))}", highlight=False, markup=False)


def progress_bar(percent: bool = False) -> Progress | LineProgress:
    """A live bar on a terminal, plain progress lines otherwise; `percent`: the share done and the time left (a run's
    simulated time), else tasks done of all."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    if not err_console.is_terminal:
        return LineProgress(percent)
    return Progress(TextColumn("{task.description}", style="bold", markup=False), BarColumn(),
                    TaskProgressColumn() if percent else MofNCompleteColumn(),
                    TextColumn("{task.fields[note]}", markup=False), TimeElapsedColumn(),
                    *([TimeRemainingColumn()] if percent else []), console=err_console)


@contextlib.contextmanager
def stage(what: str) -> Iterator[None]:
    """A step of unknown length, said as it starts: a spinner beside `what` on a terminal, a plain line otherwise
    (a month's data read for `twin evaluate` took 8 s before its first word)."""
    if err_console.is_terminal:
        with err_console.status(what):
            yield
    else:
        err_console.print(f"{what}…", highlight=False, markup=False, soft_wrap=True)  # one line in a log
        yield


def simulated(title: str, total: int, run: Callable[[Callable[[int, int], None]], T],
              refused: type[Exception] | tuple[type[Exception], ...] = ()) -> T:
    """`run(progress)` (a batch of simulations on local processes or a cluster) behind a progress bar of `total`
    tasks; a cluster that cannot be used ends the command (exit 3), and so does a `refused` error (exit 2: what the
    batch found wrong with the options, e.g. a policy a machine type cannot run)."""
    from twin.app.cluster import ClusterError

    with progress_bar() as bar:
        task = bar.add_task(title, total=total, note="")
        try:
            return run(lambda done, _: bar.update(task, completed=done, note="simulations"))
        except ClusterError as e:
            fail(str(e), code=3)
        except refused as e:
            fail(str(e))


@contextlib.contextmanager
def stop_signals() -> Iterator[threading.Event]:
    """An event that Ctrl-C or SIGTERM sets while inside: handled, not raised, so no interrupt lands mid-cleanup."""
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def open_scenario(path: Path, **overrides: object) -> Scenario:
    """The scenario file with the command line's overrides (None: keep the file's), or a clear error."""
    from twin.scenario import ScenarioError, load_scenario

    try:
        return load_scenario(path, overrides={k: v for k, v in overrides.items() if v is not None})
    except ScenarioError as e:
        fail(str(e))


_MADE: list[Path] = []  # folders this process created for its results, outermost first


def _made(folders: list[Path]) -> None:
    """Folders about to be created for results (outermost first): those still empty when the process exits are
    removed again, so a command that stopped before writing anything (a cluster away, Ctrl-C, a mistake found in the
    batch) leaves no empty report or run folder behind."""
    import atexit

    if folders and not _MADE:
        atexit.register(_remove_empty_made)
    _MADE.extend(folders)


def _remove_empty_made() -> None:
    for folder in reversed(_MADE):  # innermost first
        with contextlib.suppress(OSError):  # not empty (a result), or gone
            folder.rmdir()


def writable(path: Path, option: str = "--out", folder: bool = True) -> Path:
    """`path`, a folder (or with folder=False, a file's folder) created now if missing, or a clear error before any
    work is done: a training or a comparison no longer ends in a traceback at its very last step."""
    target = path if folder else path.parent
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:  # bytes on the command line that are not UTF-8: the store and the broker's files fail
        fail(f"{option} {str(path)!r}: a name in it is not UTF-8 text (the \\udc.. above); choose a path of UTF-8 "
             "names")
    if not folder and path.is_dir():  # '' or '.' too: the file would be written over a folder, at the very end
        fail(f"{option} {path or '.'}: a folder, not a file; give the file's name (a new one, or one to replace)")
    existing = next((p for p in (target, *target.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        fail(f"{option} {path}: {existing} is a file, not a folder; choose another path")
    try:
        _made([p for p in (target, *target.parents) if not p.exists()][::-1])
        target.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        fail(f"{option} {path}: cannot create {target} ({e.strerror or e}); choose a writable path")
    if not os.access(target, os.W_OK | os.X_OK):
        fail(f"{option} {path}: no permission to write in {target}; choose a writable path")
    return path


ForceOpt = Annotated[bool, typer.Option(help="write into --out even if it holds an earlier report")]


def report_folder(out: Optional[Path], name: str, force: bool = False) -> Path:
    """Where a report goes, made now: `out`, refused while it holds an earlier report unless `force`; else a new
    folder reports/<name>-<time> (-2, -3 … if taken), so that an earlier report is never replaced without a word."""
    import datetime as dt

    if out is not None:
        if out.is_dir() and any(out.iterdir()) and not force:
            fail(f"--out {out}: holds an earlier report; choose another folder, leave --out out (a new folder each "
                 "time), or add --force to replace it")
        return writable(out)
    stem = writable(Path("reports")) / f"{name}-{dt.datetime.now():%Y%m%d-%H%M%S}"
    for k in range(1, 1000):
        folder = stem.with_name(stem.name + (f"-{k}" if k > 1 else ""))
        with contextlib.suppress(FileExistsError):
            folder.mkdir()
            _made([folder])
            return folder
    fail(f"{stem.parent}: no free report folder named {stem.name}-N; remove old reports or give --out")


def needs_unit(value: str, option: str) -> None:
    """A time on the command line with no unit ('--duration 8') is refused unless it is 0: read as seconds, it ran an
    8-second line where 8 hours were meant, without a word (scenario files, where a number is seconds by their
    schema, keep it)."""
    from twin.distributions import bare_number

    if bare_number(value):
        fail(f"{option} {value}: give its unit, e.g. '{value.strip()} h', '{value.strip()} min' or '{value.strip()} s'")


def time_option(value: Optional[str], option: str, allow_zero: bool = False) -> Optional[float]:
    """A time option such as '8 h' in seconds (None if not given), or a clear error naming the option."""
    from twin.distributions import parse_duration

    if value is None:
        return None
    needs_unit(value, option)
    try:
        seconds = parse_duration(value)
    except ValueError as e:
        fail(f"{option}: {e}")
    if not isinstance(seconds, float) or seconds < 0 or (seconds == 0 and not allow_zero):
        fail(f"{option}: must be a {'non-negative' if allow_zero else 'positive'} time such as '8 h' or "
             f"'30 min', got {value!r}")
    return seconds


def separator_option(sep: Optional[str]) -> Optional[str]:
    """--sep as the one character that separates a table's columns: 'tab' or '\\t' (as the shell gives it) for a tab;
    anything longer is refused (pandas took a longer one as a regular expression, or refused it with its own words)."""
    if sep is None:
        return None
    char = {"\\t": "\t", "tab": "\t"}.get(sep, sep)
    if len(char) != 1:
        fail(f"--sep {sep!r}: give one character, e.g. ';' or 'tab' for a tab")
    return char


def line_prefix(line: str) -> str:
    """--line as given, once checked to be site/area/line, each level a scenario name or the wildcard +: an empty
    level, a '#' or a fourth level would subscribe to other topics (or none) without a word."""
    import re

    from twin.scenario import NAME_PATTERN

    levels = line.split("/")
    if len(levels) != 3 or not all(p == "+" or (re.match(NAME_PATTERN, p) and len(p) <= 64) for p in levels):
        fail(f"--line {line!r}: write site/area/line, e.g. plant-hamburg/hall-2/bottling-1, each level letters, "
             "digits, '_', '.' or '-' as in the scenario's `line:`, or + for any (+/+/+: every line)")
    return line


def broker_url(broker: Optional[str], ca: Optional[Path] = None, cert: Optional[Path] = None,
               key: Optional[Path] = None) -> BrokerURL | None:
    """--broker with its TLS files as a BrokerURL (None when no broker is given), or a clear error."""
    if broker is None:  # before the import: a run without a broker does not load the MQTT client (70 ms)
        if ca or cert or key:
            fail("--ca, --cert and --key set up TLS to a broker: give them with --broker mqtts://HOST:8883 (without "
                 "--broker the run's own broker listens on 127.0.0.1 without TLS)")
        return None
    from sensors.bus.broker import BrokerError, BrokerURL

    try:
        return BrokerURL.parse(broker, *(str(p) if p else None for p in (ca, cert, key)))
    except BrokerError as e:
        fail(str(e))
