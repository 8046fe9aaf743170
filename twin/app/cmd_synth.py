"""`twin synth`: train generators of synthetic sensor windows, generate them, and score them."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from twin import MAX_SEED, TIME_RANGE
from twin.app.cmd_models import fresh_out
from twin.app.options import (
    ForceOpt,
    StoreOpt,
    err_console,
    fail,
    out_console,
    print_table,
    progress_bar,
    report_folder,
    writable,
)

if TYPE_CHECKING:
    import pandas as pd

    from predictors.synth import Generator, Windows


Runs = Annotated[list[Path], typer.Argument(help="twin run folders (from `twin run`)")]
KINDS = ("vae", "gan")


def _windows(runs: list[Path], window: int, stride: int, store: Optional[str]) -> dict[str, Windows]:
    for p in runs:  # before the generators' module (torch, 2 s) loads
        if not p.is_dir():
            fail(f"{p}: not a folder; give twin run folders written by `twin run`")
    from predictors.data import DataError
    from predictors.synth import twin_windows
    from sensors.store import StoreError

    try:
        return twin_windows(runs, window, stride, store)
    except (DataError, StoreError) as e:
        fail(str(e))


def _generators(model: Path) -> dict[str, dict[str, Generator]]:
    if not model.exists():
        fail(f"--model {model}: no such folder; give one written by `twin synth train --out`")
    from predictors.synth import load_generator, load_generators

    try:
        if model.is_file():
            g = load_generator(model)
            return {g.group_: {g.kind: g}}
        return load_generators(model)
    except ValueError as e:
        fail(str(e))


def synth(
    ctx: typer.Context,
    model: Annotated[Optional[Path], typer.Option(help="generator folder (from `twin synth train`) or one .json")]
    = None,
    kind: Annotated[str, typer.Option(help="which generator of the folder: vae or gan")] = "vae",
    machine_type: Annotated[Optional[str], typer.Option(help="machine type to generate for (needed when the "
                                                        "folder holds several)")] = None,
    fault: Annotated[Optional[str], typer.Option(help="fault mode, or 'healthy'")] = None,
    severity: Annotated[float, typer.Option(min=0.0, max=1.0, help="wear of that mode at the window's end: "
                                            "0 new .. 1 failed")] = 0.8,
    n: Annotated[int, typer.Option(min=1, max=1_000_000, help="number of windows")] = 100,
    seed: Annotated[int, typer.Option(min=0, max=MAX_SEED, help="same seed, same windows")] = 0,
    out: Annotated[Optional[Path], typer.Option(help="Parquet file of the readings (the store's schema, marked "
                                                "synthetic)")] = None,
    machine: Annotated[Optional[str], typer.Option(help="machine name written into the file (default: the "
                                                   "machine type)")] = None,
    start: Annotated[str, typer.Option(help="timestamp of the first reading")] = "2026-01-01 00:00",
    force: Annotated[bool, typer.Option(help="replace --out if it exists")] = False,
) -> None:
    """Generate n synthetic windows of a fault mode at a severity into a Parquet file of readings."""
    if ctx.invoked_subcommand is not None:
        return
    if model is None or fault is None or out is None:
        fail("twin synth: give --model (from `twin synth train`), --fault and --out FILE.parquet; or use "
             "`twin synth train` / `twin synth evaluate` (see `twin synth --help`)")
    gens = _generators(model)
    if machine_type is None:
        if len(gens) > 1:
            fail(f"--machine-type: the folder holds generators for {', '.join(sorted(gens))}; name one")
        machine_type = next(iter(gens))
    if machine_type not in gens:
        fail(f"--machine-type {machine_type!r}: no generator for it in {model}; there are {', '.join(sorted(gens))}")
    if kind not in gens[machine_type]:
        fail(f"--kind {kind!r}: {model} has {', '.join(sorted(gens[machine_type]))} for {machine_type}")
    g = gens[machine_type][kind]
    try:
        import pandas as pd

        t0 = pd.Timestamp(start)
    except ValueError:
        fail(f"--start {start!r}: give a timestamp such as '2026-01-01 06:00'")
    if t0.tzinfo is not None:  # no line here to read its clock from (docs/mqtt.md): a time with an offset as UTC
        t0 = t0.tz_convert("UTC").tz_localize(None)
    if not TIME_RANGE[0] <= t0 < TIME_RANGE[1]:
        fail(f"--start {start!r}: give a time between 1970 and 2200 (the store's and the bus's range)")
    from twin.scenario import NAME_PATTERN

    if machine is not None and not re.fullmatch(NAME_PATTERN, machine):
        fail(f"--machine {machine!r}: a machine name is letters, digits, '_', '.' and '-' (one MQTT topic level, "
             "as in a scenario)")
    if out.suffix.lower() not in (".parquet", ".pq"):
        fail(f"--out {out}: give a .parquet file")
    if out.exists() and not force:
        fail(f"--out {out}: the file exists (earlier windows, or other data); give another file, or add --force to "
             "replace it")
    try:
        batches = g.sample_batches(fault, severity, n, seed, batch=4096)
        first = next(batches)
    except ValueError as e:
        fail(f"--fault/--severity: {e}")
    readings = _write_windows(itertools.chain([first], batches), writable(out, folder=False), t0,
                              f"synthetic-{kind}-{seed}", machine or machine_type)
    out_console.print(f"{n} synthetic windows of {escape(fault)} at severity {severity:g} on {escape(machine_type)} "
                      f"({g.window_} minutes × {len(g.features_)} sensors, {kind}) → [bold]{escape(str(out))}[/] "
                      f"({readings:,} readings)", markup=True, highlight=False)


def _write_windows(batches: Iterable[Windows], out: Path, start: pd.Timestamp, run: str, machine: str) -> int:
    """Windows as long readings into one Parquet file, a batch at a time (memory bounded by a batch, not by --n:
    a million windows as one frame took 40 GB); written beside it and renamed, so no half file is left. Returns
    the readings written."""
    import os

    import pyarrow as pa
    import pyarrow.parquet as pq

    part = out.with_name(out.name + ".part")
    writer, readings, k = None, 0, 0
    try:
        for w in batches:
            table = pa.Table.from_pandas(w.to_frame(start, run=run, machine=machine, first=k), preserve_index=False)
            writer = writer or pq.ParquetWriter(part, table.schema)
            writer.write_table(table)
            readings, k = readings + table.num_rows, k + len(w)
        if writer is not None:
            writer.close()
            writer = None
            os.replace(part, out)
    except OSError as e:
        fail(f"--out {out}: cannot write ({e.strerror or e}); choose a writable path")
    finally:
        if writer is not None:
            writer.close()
        part.unlink(missing_ok=True)
    return readings


def train(
    runs: Runs,
    kind: Annotated[Optional[list[str]], typer.Option(help="vae, gan (repeat for both; default both)")] = None,
    out: Annotated[Optional[Path], typer.Option(help="generator folder (default: models/<run>-synth)")] = None,
    window: Annotated[int, typer.Option(min=4, max=240, help="minutes per window")] = 30,
    stride: Annotated[int, typer.Option(min=1, help="minutes between window starts")] = 1,
    epochs: Annotated[int, typer.Option(min=1, help="VAE: epochs (at least)")] = 30,
    updates: Annotated[int, typer.Option(min=0, help="VAE: gradient steps at least (more epochs on small data)")]
    = 5000,
    steps: Annotated[int, typer.Option(min=1, help="GAN: generator steps (5 critic steps each)")] = 2000,
    seed: Annotated[int, typer.Option(min=0, max=MAX_SEED)] = 0,
    store: StoreOpt = None,
    force: Annotated[bool, typer.Option(help="write into --out even if it holds earlier generators (replacing them)")]
    = False,
) -> None:
    """Train generators (one per machine type and kind) on the labelled windows of twin runs."""
    from predictors.lifecycle import kinds

    kind = kind or list(KINDS)
    bad = [k for k in kind if k not in kinds("generator")]
    if bad:
        fail(f"--kind {bad[0]!r}: choose {' or '.join(kinds('generator'))}")
    out = out or Path("models") / f"{runs[0].parent.name}-synth"
    for k in kind:
        fresh_out(out, f"{k}.json", force)
    data = _windows(runs, window, stride, store)
    from predictors.synth import generators

    out = writable(out)
    summary = Table(title=f"trained generators → {out}")
    for col in ("machine type", "kind", "windows", "per fault mode"):
        summary.add_column(col)
    with progress_bar() as bar:
        for group, w in data.items():
            for k in dict.fromkeys(kind):
                task = bar.add_task(f"{group} {k}", total=None, note="")

                def progress(done: int, total: int, note: str, task: int = task) -> None:
                    bar.update(task, completed=done, total=total, note=note)

                params = {"epochs": epochs, "updates": updates} if k == "vae" else {"steps": steps}
                g = generators()[k](seed=seed, **params).fit(w, progress)
                g.save(out / group)
                per = ", ".join(f"{m} {c:,}" for m, c in g.meta_["data"]["per_mode"].items())
                summary.add_row(group, k, f"{len(w):,}", per)
    print_table(summary)
    out_console.print(f"generators: [bold]{escape(str(out))}[/] (`twin synth --model {escape(str(out))} --fault "
                      "... --out FILE.parquet`, `twin synth evaluate`)", markup=True, highlight=False)


def evaluate(
    runs: Annotated[list[Path], typer.Argument(help="held-out twin run folders (not used in training)")],
    model: Annotated[Path, typer.Option(help="generator folder from `twin synth train`")],
    out: Annotated[Optional[Path], typer.Option(help="report folder (default: a new reports/<model folder>-<time>)")]
    = None,
    force: ForceOpt = False,
    iterations: Annotated[int, typer.Option(min=10, help="training iterations of the post-hoc GRUs")] = 2000,
    stride: Annotated[int, typer.Option(min=1, help="minutes between held-out windows")] = 5,
    rare: Annotated[Optional[str], typer.Option(help="usefulness experiment: make this fault mode rare in --train "
                                                "and train the LSTM with and without synthetic windows of it")]
    = None,
    train: Annotated[Optional[list[Path]], typer.Option(help="the generators' training runs: also scores "
                                                        "synthetic against them (the TimeGAN protocol), the "
                                                        "conditioning classifier learns from them (needed by "
                                                        "--rare)")] = None,
    keep: Annotated[Optional[int], typer.Option(min=0, help="with --rare: failures of that mode left in the training "
                                                "data (default 1)")] = None,
    seed: Annotated[int, typer.Option(min=0, max=MAX_SEED)] = 0,
    store: StoreOpt = None,
) -> None:
    """Score generators on held-out runs (discriminative, predictive, distances, conditioning, pictures)."""
    from predictors.data import DataError
    from predictors.synth import ConditionalVAE
    from predictors.synth_eval import (
        anomaly_alerts,
        anomaly_table,
        plot_embedding,
        plot_windows,
        quality,
        quality_table,
        write_report,
    )

    gens = _generators(model)
    if rare is not None and not train:
        fail("--rare: give the training runs with --train RUN (the experiment trains its own models on them)")
    if keep is not None and rare is None:
        fail("--keep belongs to --rare MODE (the failures of that mode left in the training data)")
    window = next(iter(next(iter(gens.values())).values())).window_
    data = _windows(runs, window, stride, store)
    train_windows = _windows(train, window, stride, store) if train else {}
    modes = sorted({m for w in train_windows.values() for m in w.modes})
    if rare is not None and rare not in modes:  # named now, not after the scoring (minutes) as a traceback
        fail(f"--rare {rare!r}: no machine type of the --train runs has that wear-out mode; choose one of "
             f"{', '.join(modes) or 'none (these runs have no wear-out modes)'}")
    out = report_folder(out, model.name, force)
    reports, augment, anomaly, vaes = [], None, {}, {}
    with progress_bar() as bar:
        task = bar.add_task("scoring", total=None, note="")
        for group, w in data.items():
            if group not in gens:
                err_console.print(f"no generator for {group}: skipped", highlight=False)
                continue
            rep = quality(gens[group], w, iterations, seed, note=lambda s: bar.update(task, note=s),
                          train=train_windows.get(group))
            plot_embedding(rep, out / f"embedding-{group}.png", seed=seed)
            plot_windows(w, gens[group], out / f"windows-{group}.png", seed=seed)
            reports.append(rep)
            t = Table(title=f"{group}: synthetic vs held-out real windows (lower is better but for the last two)")
            tab = quality_table(rep)
            for col in tab.columns:
                t.add_column(col, justify="left" if col == "generator" else "right")
            for row in tab.itertuples(index=False):
                t.add_row(*(str(v) for v in row))
            print_table(t)
            vae = gens[group].get("vae")
            if isinstance(vae, ConditionalVAE) and "anomaly" in vae.meta_:
                vaes[group] = vae
        if vaes:
            bar.update(task, note="anomaly alerts")
            anomaly = anomaly_alerts(vaes, runs, store)
            out_console.print(anomaly_table(anomaly).to_string(index=False))
        if rare is not None and train:
            from predictors.synth_eval import augmentation

            try:
                augment = augmentation(train, runs, rare, keep=1 if keep is None else keep, window=window, seed=seed,
                                       store_url=store, note=lambda s: bar.update(task, note=s))
            except DataError as e:
                fail(str(e))
            out_console.print(augment.table().to_string(index=False))
    if not reports:
        fail("no generator matches this data's machine types; evaluate on runs of the line it was trained on")
    path = write_report(reports, augment, out, model, runs, anomaly)
    out_console.print(f"report: [bold]{escape(str(path))}[/]", markup=True, highlight=False)
