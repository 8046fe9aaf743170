"""Whether a run's files fit on their disks, projected from what the run has written so far: a year of a line whose
sensors sample every 10 ms fills any disk, but only after hours of simulating, and then the disk is full for every
other program too. `twin run` looks while it runs and stops a flat-out run as soon as the projection says it will
not fit (a run paced by the wall clock is warned once: its disk may be cleared before it gets there)."""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from twin.app.options import err_console

# Below this much written on a disk the projection is not made: a run's fixed files (run.json, the catalogue, a new
# DuckDB file's first blocks: under 2 MB) would weigh as if they grew with the run (3 % at most from here on).
MIN_WRITTEN = 64 * 2**20
SHARE_OF_FREE = 0.95  # a run may take this share of a disk's free space; the rest is left to everything else
SHOW_FROM = 2**30  # the progress line shows the projected size of a run's files from this size on


class DiskWouldFill(Exception):
    """A run stopped early because, at its pace, its files would not fit on their disk (exit 4, like a full disk)."""


def _bytes(path: Path, skip: tuple[str, ...] = ()) -> int:
    """Bytes in a file or under a folder but its subfolders named in `skip`, DuckDB's write-ahead logs left out
    (checkpointed into the database file every 16 MB: bounded, not growing with the run, and several times the size
    they take once checkpointed)."""
    if path.is_file():
        return path.stat().st_size
    total = 0
    for folder, subfolders, files in os.walk(path):
        subfolders[:] = [d for d in subfolders if d not in skip]
        for name in files:
            if not name.endswith(".wal"):
                with contextlib.suppress(OSError):  # a part file renamed or removed while we looked
                    total += os.stat(os.path.join(folder, name)).st_size
    return total


def _existing(path: Path) -> Path:
    """The path, or its nearest folder that exists (a store file not created yet)."""
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def gigabytes(n: float) -> str:
    """A size as a plant engineer reads it: '640 MB', '1.23 GB', '620 GB', '3.5 TB', '12,000 TB'."""
    if n >= 1e12:
        return f"{n / 1e12:.3g} TB" if n < 1e15 else f"{n / 1e12:,.0f} TB"
    return f"{n / 1e9:.3g} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB"


@dataclass
class DiskWatch:
    """Projects the size of a run's files from what it has written when `fraction` of it is done, and raises
    DiskWouldFill (flat out) or warns once (`paced`) when what is left would take more than 95 % of a disk's free
    space. `paths`: what the run writes (its result folder, a store file outside it); `skip`: subfolders not counted
    (the replications' part folders, which their workers watch themselves)."""

    paths: list[Path]
    paced: bool = False
    skip: tuple[str, ...] = ()
    what: str = "the run's files"  # what the message says will not fit
    projected: float = 0.0  # bytes the run's files come to, at the last look
    warning: str | None = None  # a paced run's warning, once made
    _start: dict[Path, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # a store may hold earlier runs: only what this run adds counts
        self._start = {p: _bytes(p, self.skip) if p.exists() else 0 for p in self.paths}

    def check(self, fraction: float) -> None:
        """Look again, `fraction` (0-1) of the run being done: at each step of the simulation (a quarter of a million
        readings; the look walks a folder of a dozen files, a tenth of a millisecond), so that a run's or a worker's
        files grow by a step's at most (10 MB) between looks."""
        if not 0 < fraction < 1:
            return
        disks: dict[int, tuple[int, list[Path], Path]] = {}  # device: bytes written there, paths, a folder on it
        for p in self.paths:
            where = _existing(p)
            written = (_bytes(p, self.skip) if p.exists() else 0) - self._start[p]
            dev = where.stat().st_dev
            before, named, _ = disks.get(dev, (0, [], where))
            disks[dev] = (before + max(written, 0), [*named, p], where)
        self.projected = 0.0
        for written, named, where in disks.values():
            total = written / fraction
            self.projected += total
            if written < MIN_WRITTEN:
                continue
            free = shutil.disk_usage(where).free
            if total - written > SHARE_OF_FREE * free:
                self._too_big(fraction, written, total, free, named)

    def _too_big(self, fraction: float, written: int, total: float, free: int, named: list[Path]) -> None:
        where = " and ".join(str(p) for p in named)
        said = (f"{self.what} would not fit on their disk: at the pace of the first {100 * fraction:.2g} % "
                f"({gigabytes(written)} written into {where}) they come to about {gigabytes(total)}, and the disk has "
                f"{gigabytes(free)} free")
        fix = ("give a shorter --duration or fewer --replications, sample the sensors less often (their `period:` in "
               "the scenario), or write to a disk with room (--out, --store)")
        if not self.paced:
            raise DiskWouldFill(f"{said}; stopped before filling it (the files written so far are closed and "
                                f"readable; run.json says `failed`). {fix[0].upper()}{fix[1:]}.")
        if self.warning is None:
            self.warning = f"{said}: it will stop when the disk is full unless space is freed; or {fix}."
            err_console.print(f"warning: {self.warning}", highlight=False)

    def note(self) -> str:
        """What the progress line adds: the projected size of the run's files, once it is a gigabyte or more."""
        return f", about {gigabytes(self.projected)} of files" if self.projected >= SHOW_FROM else ""
