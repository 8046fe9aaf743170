"""The `twin` command: the Typer app, built here with every command declared in one place.

Each command group lives in its own module (`cmd_run`, `cmd_plant`, `cmd_models`, `cmd_policies`, `cmd_dashboard`,
`cmd_synth`) as plain functions; the options several of them share are in `options`.
"""

from __future__ import annotations

import inspect
import os
import re
import signal
import sys
from collections.abc import Callable, Iterator

import typer

from twin.app import cmd_dashboard, cmd_models, cmd_plant, cmd_policies, cmd_run, cmd_synth
from twin.app.disk import DiskWouldFill
from twin.app.options import err_console

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None,
                  context_settings={"max_content_width": 250},
                  help="linetwin: a digital twin of a production line.")


def _command(group: typer.Typer, fn: Callable[..., None]) -> None:
    """Register `fn` as a command of `group`, listed by the first paragraph of its docstring on one line: Typer keeps
    a docstring's line breaks in the list of commands (`twin --help` broke 'fit' mid-sentence)."""
    summary = " ".join(inspect.cleandoc(fn.__doc__ or "").split("\n\n")[0].split())
    group.command(fn.__name__, short_help=summary)(fn)


# scenarios in, runs out
_command(app, cmd_run.validate)
_command(app, cmd_run.run)
_command(app, cmd_run.ingest)
_command(app, cmd_run.schema)
# the twin of a real line: calibrated from the plant's records
_command(app, cmd_plant.fit)
_command(app, cmd_plant.connect)
_command(app, cmd_plant.whatif)
# fault forecasting
_command(app, cmd_models.train)
_command(app, cmd_models.evaluate)
_command(app, cmd_models.predict)
_command(app, cmd_models.alerts)
# maintenance policies
_command(app, cmd_policies.compare)
_command(app, cmd_policies.tune)
_command(app, cmd_policies.allocate)
_command(app, cmd_policies.sensitivity)
_command(app, cmd_policies.plan)
# the live view
_command(app, cmd_dashboard.dashboard)
_command(app, cmd_dashboard.passwd)
# synthetic anomaly data
synth_app = typer.Typer(no_args_is_help=False, invoke_without_command=True,
                        help="Synthetic sensor windows: `twin synth train`, `twin synth --fault ... --out FILE`, "
                             "`twin synth evaluate`.")
synth_app.callback()(cmd_synth.synth)
_command(synth_app, cmd_synth.train)
_command(synth_app, cmd_synth.evaluate)
app.add_typer(synth_app, name="synth")


class Terminated(KeyboardInterrupt):
    """SIGTERM (systemd, docker, `kill`): unwinds like Ctrl-C, so every command stops cleanly."""


_TERMINATED: list[bool] = []  # set once SIGTERM arrived (Click turns the exception into its own exit)


def _terminate(signum: int, frame: object) -> None:
    _TERMINATED.append(True)
    raise Terminated("SIGTERM")


_UNITS = {"B": 1, "bytes": 1, "KB": 1e3, "KiB": 2**10, "MB": 1e6, "MiB": 2**20, "GB": 1e9, "GiB": 2**30, "TB": 1e12,
          "TiB": 2**40}


def _at_own_limit(said: str) -> bool:
    """Whether a DuckDB out-of-memory message says the allocation would pass its own memory_limit: "failed to
    allocate data of size 2.0 MiB (216.0 KiB/976.5 KiB used)"."""
    def size(number: str, unit: str) -> float:
        return float(number) * _UNITS.get(unit, float("nan"))

    m = re.search(r"\(([\d.]+) ?(\w+)/([\d.]+) ?(\w+) used\)", said)
    if m is None:
        return False
    asked = re.search(r"of size ([\d.]+) ?(\w+)", said)
    return size(m[1], m[2]) + (size(asked[1], asked[2]) if asked else 0.0) >= 0.9 * size(m[3], m[4])


def resource_error(error: BaseException) -> str | None:
    """A full disk or exhausted memory anywhere in the error's chain, said in one paragraph with what to do; None
    for any other error."""
    import errno

    for seen in _chain(error):
        said = str(seen)
        if isinstance(seen, DiskWouldFill):
            return said
        # (Arrow's codecs say "Allocation error : not enough memory" in an OSError with no errno)
        # DuckDB at the store's own memory_limit: "(63.9 MiB/64.0 MiB used)"; any other OutOfMemoryException
        # ("Allocation failure", an allocation refused under an address-space limit) is the machine's memory
        if type(seen).__name__ == "OutOfMemoryException" and _at_own_limit(said):
            return ("the DuckDB store ran out of its memory limit: the command stopped (a run's run.json says "
                    "`failed`); give the store more, e.g. --store 'duckdb:///path/twin.duckdb?memory_limit=1GB'")
        if isinstance(seen, MemoryError) or type(seen).__name__ == "OutOfMemoryException" \
                or (isinstance(seen, RuntimeError) and "can't start new thread" in said) \
                or (isinstance(seen, OSError) and (seen.errno == errno.ENOMEM
                                                   or "not enough memory" in said.lower())) \
                or (isinstance(seen, ImportError) and ("cannot allocate memory" in said.lower()
                                                       or "failed to map segment" in said)):  # a library's load
            return ("out of memory: the command stopped (a run's files written so far are closed and its run.json "
                    "says `failed`); run fewer replications side by side (--jobs), a shorter --duration, or on a "
                    "machine with more memory")
        if (isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT)) \
                or "No space left on device" in str(seen):
            where = f" ({seen.filename})" if isinstance(seen, OSError) and seen.filename else ""
            return (f"no space left on the disk{where}: the command stopped (a run's run.json says `failed` with the "
                    "reason; result files it could not finish are left as hidden .*.writing files); free space or "
                    "write to another disk (--out, --store), then run it again")
    return None


def _chain(error: BaseException) -> Iterator[BaseException]:
    """The error and every error behind it, through both `raise ... from` and the error being handled when it was
    raised: a Dask cluster that timed out closing, after a worker had filled the disk, raised a TimeoutError from
    its own CancelledError, which a walk through `__cause__` alone followed away from the full disk (a traceback)."""
    todo, seen = [error], set()
    while todo:
        e = todo.pop(0)
        if id(e) not in seen:
            seen.add(id(e))
            yield e
            todo += [x for x in (e.__cause__, e.__context__) if x is not None]


def main() -> None:
    """The `twin` entry point: Ctrl-C and SIGTERM stop a command cleanly (its children, the embedded broker and
    the files it writes closed; a run's run.json says `interrupted`), exit 130 and 143; `kill -USR1 PID` dumps
    every thread's stack (for a hang). A full disk or exhausted memory ends with one paragraph and exit 4."""
    import atexit
    import faulthandler
    import gc

    # registered first, so it runs last: at the interpreter's exit its final collection scanned every object the
    # command left (0.24 s after a run on local Dask workers, whose process never froze them: `runner._freeze_loaded`);
    # frozen, they are freed as the modules go (0.06 s). Nothing of ours waits for that collection: every file is
    # closed by the command itself
    atexit.register(gc.freeze)
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    signal.signal(signal.SIGTERM, _terminate)
    # a parent may start us with these blocked (a mask is inherited across exec): they must reach us
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    # Arrow on the system's allocator, set before pyarrow loads: its default mimalloc kept ~50 MB of the writer
    # threads' freed batches (body_shop 8 h: 308 → 258 MB peak RSS, same speed; bench/run_overhead.py)
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
    try:
        app()
    except (KeyboardInterrupt, SystemExit) as e:
        if _TERMINATED:
            err_console.print("terminated (SIGTERM): stopped cleanly")
            sys.exit(143)
        if isinstance(e, SystemExit):
            raise
        err_console.print("interrupted")
        sys.exit(130)
    except Exception as e:
        reason = resource_error(e)
        if reason is None:
            raise
        err_console.print(f"error: {reason}", highlight=False, markup=False)
        sys.exit(4)


if __name__ == "__main__":
    main()
