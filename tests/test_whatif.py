"""What-if from the line's state now: a twin run's state records and buffer levels read back from its store at
mid-run, the remainder simulated from there (as is, and with a second technician), and the original run's own
remainder inside the range the what-if gives; the retained state on a real broker as the other source; resumed
repairs and lives drawn given the time already spent."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import ROOT, Mosquitto, assert_mistakes, twin_cmd
from twin.distributions import Exponential, Weibull, residual
from twin.scenario import LineNow, MachineNow, Scenario, continue_from, load_scenario
from twin.truth import left_good

SCENARIO = ROOT / "tests" / "scenarios" / "whatif.yaml"


@pytest.mark.slow
def test_continuing_a_run_from_its_mid_run_state_brackets_what_it_really_made(tmp_path: Path) -> None:
    run = tmp_path / "run"
    r = subprocess.run(twin_cmd("run", SCENARIO, "--no-stream", "--out", run), cwd=ROOT, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    at = pd.Timestamp("2026-01-05 14:00")  # 8 h into the 16 h run
    out = tmp_path / "whatif.csv"
    r = subprocess.run(twin_cmd("whatif", SCENARIO, "--from", f"duckdb:///{run / 'twin.duckdb'}", "--at",
                                at.isoformat(), "--duration", "8 h", "--replications", "40", "--extra-crew",
                                "maintenance", "--seed", "100", "--out", out),
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "buffer levels cell-2" in " ".join(r.stderr.split()), "the buffers' levels at 14:00 came from the store"
    parts = pd.read_parquet(run / "truth" / "parts.parquet")
    made = int(((parts.exit_time >= at) & (parts.exit_time < at + pd.Timedelta("8 h")) & left_good(parts)).sum())
    table = pd.read_csv(out).set_index("alternative")
    reps = pd.read_csv(out.with_name("whatif-replications.csv"))
    assert table.loc["as is", "5 %"] <= made <= table.loc["as is", "95 %"], (made, table)
    assert len(reps) == 40 and table.loc["as is", "good parts"] == pytest.approx(reps["as is"].mean())
    crew = table.loc["+1 technician, maintenance"]
    assert crew["vs as is"] - crew["vs ± (95 % CI)"] > 0, "one technician for four cells: a second one helps"
    assert "as is" in r.stdout and "+1 technician," in r.stdout
    r = subprocess.run(twin_cmd("whatif", SCENARIO, "--from", f"duckdb:///{run / 'twin.duckdb'}", "--add-shift",
                                "22:00-24:00"), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "has no shift calendar" in r.stderr and "Traceback" not in r.stderr
    # a time after the data's end: every machine sat in its last state for the gap and every wear grew through it
    # (0 good parts 'as is' from a year later); now refused, naming the last record
    r = subprocess.run(twin_cmd("whatif", SCENARIO, "--from", f"duckdb:///{run / 'twin.duckdb'}", "--at",
                                "2027-01-05T14:00"), cwd=ROOT, capture_output=True, text=True, timeout=300)
    told = " ".join(r.stderr.split())
    assert r.returncode == 3 and "2027-01-05 14:00:00 is after the last record of run" in told, r.stderr
    assert "(2026-01-05 22:00:00)" in told and "Traceback" not in r.stderr
    # a time with a UTC offset is the line's clock's (this line's is UTC): its offset was dropped, 15:00 read as 15:00
    r = subprocess.run(twin_cmd("whatif", SCENARIO, "--from", f"duckdb:///{run / 'twin.duckdb'}", "--at",
                                "2027-01-05T15:00+01:00"), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 3 and "2027-01-05 14:00:00 is after the last record" in " ".join(r.stderr.split())


@pytest.mark.slow
def test_the_state_now_from_a_brokers_retained_messages(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """A streamed run leaves each machine's state and the buffer levels retained on the broker (and the levels in
    its store, through the ingest); a what-if reads them from there."""
    run = tmp_path / "run"
    r = subprocess.run(twin_cmd("run", SCENARIO, "--duration", "2 h", "--broker", mosquitto.url, "--out", run),
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    from sensors.store import open_store

    store = open_store(f"duckdb:///{run / 'twin.duckdb'}")
    try:
        levels = store.levels()
    finally:
        store.close()
    assert set(levels.station) == {"cell-2", "cell-3", "cell-4"} and levels.ts.max() > levels.ts.min()
    r = subprocess.run(twin_cmd("whatif", SCENARIO, "--from", mosquitto.url, "--duration", "1 h", "--replications",
                                "3"), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    told = " ".join(r.stderr.split())
    assert "continuing from 2026-01-05 07:59" in told or "continuing from 2026-01-05 08:00" in told, told
    assert "(retained messages)" in told and "buffer levels cell-2" in told


@pytest.mark.slow  # seconds of CLI runs: the full suite
def test_the_state_now_from_a_plants_status_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A plant without `twin connect` has its MES's status log (or stop list), the file `twin fit` read: a what-if
    from its last row (or --at a time in it) reads each machine's state and its fault modes' ages as from a store's
    state records (the same to the millisecond), in the plant's own names where mapped; a store was the only way."""
    monkeypatch.setenv("LINETWIN_HOME", str(tmp_path / "home"))
    from sensors.snapshot import from_store
    from sensors.store import open_store
    from twin.fit import log_from_run, read_log, state_at

    run = tmp_path / "run"
    r = subprocess.run(twin_cmd("run", SCENARIO, "--no-stream", "--duration", "8 h", "--out", run), cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    sc = load_scenario(SCENARIO)
    log = log_from_run(pd.read_parquet(run / "truth" / "states.parquet"),
                       pd.read_parquet(run / "truth" / "events.parquet"), pd.Timestamp(sc.start))
    log.to_csv(tmp_path / "status.csv", index=False)
    at = pd.Timestamp("2026-01-05 10:00")
    db = open_store(f"duckdb:///{run / 'twin.duckdb'}", read_only=True)
    try:
        stored = from_store(db, sc, "store", at=at.to_pydatetime()).machines
        levels = db.levels()
        fullest = pd.Timestamp(levels.loc[levels["level"].idxmax(), "ts"]) + pd.Timedelta(minutes=1)
        snapshot = from_store(db, sc, "store", at=fullest.to_pydatetime())
    finally:
        db.close()
    logged = state_at(read_log(tmp_path / "status.csv"), sc, at, "log").machines
    assert set(logged) == set(stored) == {"cell-1", "cell-2", "cell-3", "cell-4"}
    for m, now in stored.items():  # the store keeps times to the millisecond
        assert (logged[m].state, logged[m].mode, logged[m].unrenewed) == (now.state, now.mode, now.unrenewed)
        assert logged[m].since == pytest.approx(now.since, abs=2e-3)
        assert logged[m].ages == pytest.approx(now.ages, abs=5e-3) and sum(now.ages.values()) > 0
    # the buffers' levels then from the plant's buffer-level log (as `twin fit --levels` reads it): the store's
    from twin.app.cmd_plant import _from_log

    levels.rename(columns={"ts": "timestamp"})[["timestamp", "station", "level"]].to_csv(tmp_path / "levels.csv",
                                                                                         index=False)
    assert snapshot.buffers and sum(snapshot.buffers.values()) > 0
    assert _from_log(sc, [tmp_path / "status.csv"], fullest.to_pydatetime(), None, tmp_path / "levels.csv"
                     ).buffers == snapshot.buffers
    # the log as two exports overlapping by an hour (an MES's monthly files, as `twin fit` takes them): the state the
    # whole log gives; `--from` took one file
    cut = pd.Timestamp("2026-01-05 08:30")
    log[log.timestamp < cut + pd.Timedelta(hours=1)].to_csv(tmp_path / "part-1.csv", index=False)
    log[log.timestamp >= cut].to_csv(tmp_path / "part-2.csv", index=False)
    whole = _from_log(sc, [tmp_path / "status.csv"], at.to_pydatetime(), None)
    assert _from_log(sc, [tmp_path / "part-1.csv", tmp_path / "part-2.csv"], at.to_pydatetime(), None
                     ).machines == whole.machines
    assert _from_log(sc, [tmp_path / "part-2.csv"], at.to_pydatetime(), None).machines != whole.machines
    (tmp_path / "elsewhere.csv").write_text("timestamp,station,level\n2026-01-05T06:00,Puffer 2,4\n")
    # the plant's names, mapped as `twin fit` maps them
    german = log.assign(machine=log.machine.str.replace("cell-", "Zelle "), state=log.state.replace(
        {"working": "Produktion", "starved": "Mangel", "blocked": "Stau", "down": "Störung"}))
    german.rename(columns={"timestamp": "Zeit"}).to_csv(tmp_path / "mes.csv", index=False, sep=";")
    r = subprocess.run(twin_cmd("whatif", SCENARIO, "--from", tmp_path / "mes.csv", "--at", "2026-01-05T10:00",
                                "--duration", "1 h", "--replications", 3, "--columns", "Zeit=timestamp",
                                "--states", "Produktion=working, Mangel=starved, Stau=blocked, Störung=down",
                                "--machine-names", ", ".join(f"Zelle {i}=cell-{i}" for i in range(1, 5))),
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    told = " ".join(r.stderr.split())
    assert r.returncode == 0, r.stderr
    assert "continuing from 2026-01-05 10:00:00 (mes.csv, a status log): 4 machines" in told, told
    assert "buffer levels not known: the scenario's initial levels" in told and "as is" in r.stdout
    # the same moment from the stop list the status log implies (a stop's state and reason kept; working between)
    stops = [(t, e, m, s, why) for (t, m, s, why), e in zip(log.itertuples(index=False),
                                                            log.groupby("machine").timestamp.shift(-1))
             if s in ("down", "maintenance") and not pd.isna(e)]
    pd.DataFrame(stops, columns=["start", "end", "machine", "state", "reason"]).to_csv(tmp_path / "stops.csv",
                                                                                        index=False)
    r = subprocess.run(twin_cmd("whatif", SCENARIO, "--from", tmp_path / "stops.csv", "--duration", "1 h",
                                "--replications", 2), cwd=ROOT, capture_output=True, text=True, timeout=300)
    told = " ".join(r.stderr.split())
    assert r.returncode == 0 and "(stops.csv, a stop list): 4 machines" in told, r.stderr
    assert "note: stops.csv is a stop list: the lives of cell (clock: operating) count the waits" in told, told
    end = f"{log.timestamp.max():%Y-%m-%d %H:%M:%S}"
    assert_mistakes(["whatif", str(SCENARIO), "--duration", "1 h", "--replications", "2"], [
        (["--from", str(tmp_path / "status.csv"), "--at", "2026-01-06T10:00"],
         f"status.csv: 2026-01-06 10:00:00 is after its last row ({end}); the line's state is known from "
         f"2026-01-05 06:00:00 to {end}: give --at between them"),
        (["--from", str(tmp_path / "mes.csv"), "--columns", "Zeit=timestamp", "--states",
          "Produktion=working, Mangel=starved, Stau=blocked, Störung=down"],
         "mes.csv: none of its machines (Zelle 1, Zelle 2, Zelle 3, Zelle 4) is in the scenario (cell-1, cell-2, "
         "cell-3, cell-4); name them as the scenario does, or map the log's names with --machine-names "
         "'Zelle 1=cell-1, …'"),
        (["--from", str(tmp_path / "mes.csv"), "--machine-names", "Zelle 1=cell-9"],
         "--machine-names: 'Zelle 1=cell-9': 'cell-9' is not a machine of the base scenario"),
        (["--from", str(run / "twin.duckdb")], f"--from {run / 'twin.duckdb'}: a store is given as duckdb:///"),
        (["--from", str(tmp_path / "part-1.csv"), "--from", f"duckdb:///{run / 'twin.duckdb'}"],
         f"--from duckdb:///{run / 'twin.duckdb'}: several --from are the files of one log (monthly exports); a store "
         "or a broker is given alone"),
        (["--from", f"duckdb:///{run / 'twin.duckdb'}", "--levels", str(tmp_path / "levels.csv")],
         "levels.csv: a buffer-level log goes with --from a status log file"),
        (["--from", str(tmp_path / "status.csv"), "--levels", str(tmp_path / "elsewhere.csv")],
         "elsewhere.csv: none of its stations (Puffer 2) is a station with a buffer in the scenario (cell-2, cell-3, "
         "cell-4)")])


def test_alternatives_are_checked_before_the_lines_state_is_read(tmp_path: Path) -> None:
    """A buffer for the first station of a saturated line (it has none) was simulated as an alternative identical to
    'as is' (+0 ± 0), the same alternative twice ran twice, and every mistake was found only after the state was read
    (here the store does not exist: the alternatives' mistakes are named first)."""
    nowhere = f"duckdb:///{tmp_path / 'nothing.duckdb'}"
    assert_mistakes(["whatif", str(SCENARIO), "--from", nowhere], [
        (["--buffer", "cell-1=5"], "--buffer 'cell-1=5': station cell-1 takes parts from the line's saturated source "
                                   "and has no buffer; give one of cell-2, cell-3, cell-4"),
        (["--buffer", "cell-2=5", "--buffer", "cell-2=5"], "--buffer 'cell-2=5' is given twice"),
        (["--extra-crew", "maintenance", "--extra-crew", "maintenance"], "--extra-crew 'maintenance' is given twice"),
        (["--buffer", "cell-9=5"], "--buffer 'cell-9=5': write STATION=PARTS"),
        (["--machines", "cell-2=1"], "--machines 'cell-2=1': station cell-2 has 1 machine already"),
        (["--machines", "cell-2=two"], "give the number of machines in parallel, 1 to 1000"),
        (["--machines", "cell-9=2"], "--machines 'cell-9=2': write STATION=N with a station of the scenario"),
        (["--cycle-time", "cell-2=50"], "--cycle-time 50: give its unit"),
        (["--cycle-time", "cell-2=0 s"], "a mean cycle time from 1 ms to a year"),
        (["--cycle-time", "cell-2=58 s"], "station cell-2's mean cycle is 58 s already; give another"),
    ])


def test_more_machines_or_another_cycle_at_a_station_asalternatives() -> None:
    """The two questions a line's capacity raises (one more machine at a station, a faster or slower cycle) as
    what-if alternatives: the machines it has keep their names and the states read from the line, the cycle's law
    keeps its shape, and a station slowed to half its speed costs parts."""
    from twin.app.alternatives import alternatives
    from twin.app.runner import simulate

    sc, _ = continue_from(load_scenario(SCENARIO).model_copy(update={"duration": 4 * 3600.0}), LineNow(
        taken="2026-01-05T14:00:00", machines={"cell-2": MachineNow(state="down", since=600, mode="jam")}))
    options = dict(alternatives(sc, [], [], [], [], ["cell-2=2"], ["cell-3=124 s"]))
    assert list(options) == ["as is", "cell-2: 2 machines", "cell-3: cycle 124 s"]
    two = options["cell-2: 2 machines"]
    assert two.stations[1].machine_names == ["cell-2", "cell-2-2"] and two.now is not None
    assert two.now.machines["cell-2"].state == "down"
    slow = options["cell-3: cycle 124 s"].stations[2].cycle_time
    assert (slow.mean, slow.sd) == pytest.approx((124.0, 12.0))  # type: ignore[union-attr]
    line = simulate(two, 0, sensors=False).line
    assert [m.name for m in line.machines] == ["cell-1", "cell-2", "cell-2-2", "cell-3", "cell-4"]
    # common random numbers: the machines it has draw from their own slots as 'as is', the new one from one after
    assert [m.slot for m in line.machines] == [0, 1, 4, 2, 3]
    assert two.machine_order() == ["cell-1", "cell-2", "cell-3", "cell-4"]  # the line's, kept for the what-if only:
    copy = Scenario.model_validate_json(two.model_dump_json(by_alias=True))  # not in a file or a worker's copy
    assert copy.machine_order() == ["cell-1", "cell-2", "cell-2-2", "cell-3", "cell-4"]
    made = {k: np.mean([len(simulate(v, rep, sensors=False).line.stations[-1][0].log.finished) for rep in range(4)])
            for k, v in options.items() if k != "cell-2: 2 machines"}
    assert made["cell-3: cycle 124 s"] < 0.8 * made["as is"], made  # failures elsewhere take their share too


def test_a_store_of_several_lines_gives_each_scenario_its_own_lines_state(tmp_path: Path) -> None:
    """A plant's store holds several lines: the state came from the run with the latest record whatever its line, so
    `twin whatif body_shop.yaml --from` a bottling run's store continued with no machine of the body shop known (each
    started new) and printed a forecast all the same. Now this line's latest run is read, and a store with none of
    its machines is refused, naming what it holds."""
    from sensors.snapshot import SnapshotError, from_store
    from sensors.store import open_store

    db = open_store(f"duckdb:///{tmp_path / 'plant.duckdb'}")
    t0 = pd.Timestamp("2026-01-05 06:00")

    def states(run: str, machines: list[str], start: pd.Timestamp) -> pd.DataFrame:
        return pd.DataFrame({"run": run, "replication": 0, "machine": machines, "ts": start, "state": "working",
                             "reason": ""})

    db.write_states(states("cells-1", ["cell-1", "cell-2", "cell-3", "cell-4"], t0))
    db.write_states(states("bottling-1", ["filler-a", "capper"], t0 + pd.Timedelta("2 h")))  # the latest record
    now = from_store(db, load_scenario(SCENARIO), "plant")
    assert set(now.machines) == {"cell-1", "cell-2", "cell-3", "cell-4"} and "run cells-1" in now.source
    assert now.machines["cell-1"].unrenewed == ["spindle_wear", "jam"]  # no repair or maintenance in the records
    other = load_scenario(ROOT / "scenarios" / "body_shop.yaml")
    with pytest.raises(SnapshotError, match=r"plant: no state records of biw-line-1's machines \(closures, .*\); its "
                                            r"latest run 'bottling-1' holds other machines \(capper, filler-a\)"):
        from_store(db, other, "plant")
    with pytest.raises(SnapshotError, match=r"run 'bottling-1' holds other machines"):
        from_store(db, load_scenario(SCENARIO), "plant", run="bottling-1")
    db.close()


def test_a_repair_under_way_resumes_for_what_is_left_of_it() -> None:
    rng = np.random.default_rng(1)
    exp = Exponential(dist="exponential", mean=100.0)
    left = np.array([residual(exp, rng, 300.0) for _ in range(4000)])
    assert left.mean() == pytest.approx(100.0, rel=0.06), "memoryless: what is left has the same mean"
    wb = Weibull(dist="weibull", shape=3.0, scale=100.0)
    old, new = (np.mean([residual(wb, rng, a) for _ in range(3000)]) for a in (120.0, 0.0))
    assert old < 0.5 * new, "wear-out: an old part has less life left"
    assert residual(Exponential(dist="exponential", mean=1.0), rng, 1e6) == 0.0, "beyond any chance: it ends now"


def test_machines_down_beyond_their_crew_wait_for_it_and_then_take_a_whole_repair() -> None:
    """Three machines down as the state is read, one technician: a state record does not say whose repair has begun.
    Each resumed mid-repair, as if the technician worked on all three at once (all up within 10 minutes). Now the one
    down longest is under way, the others wait in the order they stopped and then take a whole repair of 20 minutes:
    up at 0, 20 and 40 minutes."""
    from twin.app.runner import simulate
    from twin.model import Machine

    doc = {"line": {"site": "s", "area": "a", "name": "cells"}, "seed": 5, "duration": "2 h",
           "repair_crews": [{"name": "fix", "size": 1}],
           "machine_types": {"m": {"repair_crew": "fix", "fault_modes": [{
               "name": "jam", "kind": "sudden", "ttf": {"dist": "exponential", "mean": "1000 h"},
               "repair": "20 min"}]}},
           "stations": [{"name": name, "machine_type": "m", "cycle_time": "60 s", "buffer": 5} for name in "abc"]}
    doc["stations"][0].pop("buffer")
    since = {"a": 600.0, "b": 3600.0, "c": 1800.0}
    out, _ = continue_from(Scenario.model_validate(doc), LineNow(taken="2026-01-05T14:00:00", machines={
        k: MachineNow(state="down", since=v, mode="jam") for k, v in since.items()}))
    line = simulate(out, 0, sensors=False).line
    def up_at(m: Machine) -> float:  # the end of its first stop
        changes = list(zip(m.log.t, m.log.state))
        first = next(k for k, (_, s) in enumerate(changes) if s == 3)
        return next(t for t, s in changes[first:] if s != 3)

    up = {m.name: up_at(m) for m in line.machines}
    assert up == {"a": 2400.0, "b": 0.0, "c": 1200.0}, up


def test_a_wear_never_renewed_in_the_records_is_drawn_older_than_they_show() -> None:
    """A wear mode with no repair or maintenance in the store's records has lasted at least since the first record,
    but was already under way then in a line in service (`start_age: random`): its life was drawn given that floor,
    as if new at the first record, and the what-if ran high (bench/whatif.py: mean percentile 0.42 over 64 cases).
    Now how far it was then is drawn as the line's start draws it, given that it has lasted since: less life left
    (here 1.6-1.8 h of a 5 h Weibull life, against 2.6-2.9 h from the floor alone)."""
    from twin.model import Line

    sc = load_scenario(SCENARIO)
    left = {}
    for flag in ([], ["spindle_wear"]):
        out, _ = continue_from(sc, LineNow(taken="2026-01-05T14:00:00", machines={"cell-1": MachineNow(
            state="working", ages={"spindle_wear": 7200.0, "jam": 7200.0}, unrenewed=flag)}))
        cells = [Line(out, rep).machines[0] for rep in range(150)]
        assert all(-m.born[0] >= 7200.0 for m in cells) and all(m.born[1] == -7200.0 for m in cells)
        left[bool(flag)] = np.mean([m.life[0] + m.born[0] for m in cells]) / 3600
    assert left[True] < 0.75 * left[False], left
    new = sc.model_copy(update={"machine_types": {"cell": sc.machine_types["cell"].model_copy(
        update={"start_age": "new"})}})  # a line that started new at its first record: the floor is its age
    out, _ = continue_from(new, LineNow(taken="2026-01-05T14:00:00", machines={"cell-1": MachineNow(
        state="working", ages={"spindle_wear": 7200.0}, unrenewed=["spindle_wear"])}))
    assert Line(out, 0).machines[0].born[0] == -7200.0


def test_a_state_read_from_the_line_starts_the_scenario_there() -> None:
    sc = load_scenario(SCENARIO)
    now = LineNow(taken="2026-01-05T14:00:00", machines={
        "cell-1": MachineNow(state="down", since=600, mode="jam", ages={"spindle_wear": 3600.0}),
        "ghost": MachineNow(state="working")}, buffers={"cell-2": 99, "cell-3": 5})
    out, notes = continue_from(sc, now)
    assert out.start.hour == 14 and out.warmup == 0 and out.now is not None and set(out.now.machines) == {"cell-1"}
    assert [s.initial for s in out.stations] == [0, 30, 5, 0]
    assert any("ghost" in n for n in notes) and any("more than its buffer holds" in n for n in notes)
    from twin.app.runner import simulate

    line = simulate(out, 0, sensors=False).line
    cell1 = line.machines[0]
    changes = [(t, s) for t, s in zip(cell1.log.t, cell1.log.state) if t > 0 or s == 3][:2]
    assert changes[0] == (0.0, 3), "cell-1 starts down, its repair resumed"
    assert 0 < changes[1][0] < 3600 and changes[1][1] != 3, "and up once what was left of the repair is done"


@settings(max_examples=25, deadline=None)
@given(st.dictionaries(st.sampled_from(["cell-1", "cell-2", "cell-3", "cell-4", "other"]), st.builds(
    MachineNow, state=st.sampled_from(["working", "blocked", "down", "maintenance", "starved", "offline"]),
    since=st.floats(0, 1e7), mode=st.sampled_from(["", "jam", "spindle_wear", "unknown"]),
    ages=st.dictionaries(st.sampled_from(["jam", "spindle_wear", "x"]), st.floats(0, 1e7), max_size=2),
    rul=st.dictionaries(st.sampled_from(["jam", "spindle_wear"]), st.floats(0, 1e6), max_size=2)), max_size=5),
    st.one_of(st.none(), st.dictionaries(st.sampled_from(["cell-1", "cell-2", "cell-4", "x"]),
                                         st.integers(0, 10_000), max_size=4)))
def test_any_state_read_from_a_line_runs(machines: dict[str, MachineNow], buffers: dict[str, int] | None) -> None:
    """Whatever a plant's records say (states, ages and RUL of any size, unknown machines and modes, buffer levels
    beyond capacity), the line continues from it and runs."""
    from twin.app.runner import simulate

    sc = load_scenario(SCENARIO).model_copy(update={"duration": 3600.0})
    out, _ = continue_from(sc, LineNow(taken="2026-01-05T14:00:00", machines=machines, buffers=buffers))
    kpis = simulate(out, 0, sensors=False).kpis
    assert (kpis[kpis.kpi == "throughput [parts/h]"].value >= 0).all()


@pytest.mark.slow  # seconds of CLI runs: the full suite
def test_an_assemblys_feeder_buffers_are_stored_and_continued_from(tmp_path: Path) -> None:
    """An assembly has a buffer per feeder; their levels were neither published nor stored, and a what-if started
    them empty (and `initial` on an assembly was ignored without a word). Now each is a level of its own
    ('assy<shaft'), and the line continues from them."""
    from sensors.store import open_store
    from twin.model import Line
    from twin.scenario import ScenarioError

    pumps = ROOT / "tests" / "scenarios" / "pumps.yaml"
    run = tmp_path / "run"
    r = subprocess.run(twin_cmd("run", pumps, "--no-stream", "--duration", "4 h", "--warmup", "0", "--out", run),
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    store = open_store(f"duckdb:///{run / 'twin.duckdb'}", read_only=True)
    try:
        levels = store.levels()
    finally:
        store.close()
    assert {"assy<housing", "assy<shaft", "test", "rework"} <= set(levels.station)
    assert levels[levels.station == "assy<shaft"].level.max() > 0  # the shafts wait for housings, two at a time
    sc, _ = continue_from(load_scenario(pumps), LineNow(taken="2026-01-05T10:00:00",
                                                        buffers={"assy<shaft": 3, "assy<housing": 9, "test": 2}))
    assy = sc.stations[2]
    assert assy.feeder_initial == {"shaft": 3, "housing": 4}  # 9 housings read: the buffer holds 4
    line = Line(sc)
    assert {f: len(b.items) for f, b in line.station_inputs[2].items()} == {"housing": 4, "shaft": 3}
    assert line.buffer_levels()["assy<shaft"] == 3 and line.buffer_levels()["test"] == 2
    from twin.app.alternatives import alternatives

    smaller = dict(alternatives(sc, [], [], ["assy=2"]))["buffer assy = 2"]
    assert smaller.stations[2].feeder_initial == {"shaft": 2, "housing": 2}  # what the smaller buffer holds
    r = subprocess.run(twin_cmd("whatif", pumps, "--from", f"duckdb:///{run / 'twin.duckdb'}", "--replications", "2",
                                "--duration", "1 h"), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "assy<shaft" in " ".join(r.stderr.split()), r.stderr  # 1 h ahead of a line whose
    # file warms up for 2 h: refused ('warmup must be shorter than duration') though a what-if has no warm-up
    r = subprocess.run(twin_cmd("run", pumps, "--from", f"duckdb:///{run / 'twin.duckdb'}", "--no-stream",
                                "--duration", "1 h", "--out", tmp_path / "on"), cwd=ROOT, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(twin_cmd("run", pumps, "--from", f"duckdb:///{run / 'twin.duckdb'}", "--warmup", "1 h"),
                       cwd=ROOT, capture_output=True, text=True, timeout=300)  # was accepted and ignored
    assert r.returncode == 2 and "--warmup with --from" in r.stderr, r.stderr
    data = yaml.safe_load(pumps.read_text())
    data["stations"][2]["initial"] = 2
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(ScenarioError, match=r"a buffer per feeder, so initial does not say which; give "
                                            r"feeder_initial: \{housing: 2\}"):
        load_scenario(tmp_path / "bad.yaml")


def test_a_what_if_whose_horizon_is_off_shift_throughout_is_refused_unless_a_shift_is_added(tmp_path: Path) -> None:
    """From 22:30 on a Tuesday, the next 4 h of a two-shift line are off shift: every alternative made 0 parts, its
    availability printed as 'nan%' under a RuntimeWarning. Now that is said, with the next shift's start; an extra
    shift in the gap is what such a question asks, and runs."""
    from sensors.store import open_store

    cell = ROOT / "scenarios" / "cnc_cell.yaml"
    machines = [m for s in load_scenario(cell).stations for m in s.machine_names]
    url = f"duckdb:///{tmp_path / 'cell.duckdb'}"
    db = open_store(url)
    db.write_states(pd.DataFrame({"run": "cell", "replication": 0, "machine": machines,
                                  "ts": pd.Timestamp("2026-01-06 22:30"), "state": "off_shift", "reason": ""}))
    db.close()
    assert_mistakes(["whatif", str(cell), "--from", url, "--duration", "4 h", "--replications", "2"], [
        ([], "error: the next 4 h from Tue 2026-01-06 22:30 are off shift (shifts 06:00-14:00, 14:00-22:00 on mon, "
             "tue, wed, thu, fri); the next shift starts at Wed 2026-01-07 06:00: nothing would be made"),
        (["--buffer", "saw=4"], "are off shift")])
    r = subprocess.run(twin_cmd("whatif", cell, "--from", url, "--duration", "4 h", "--replications", 2,
                                "--add-shift", "22:00-24:00"), cwd=ROOT, capture_output=True, text=True, timeout=300,
                       env={**os.environ, "COLUMNS": "200"})
    assert r.returncode == 0 and "Warning" not in r.stderr, r.stderr
    out = " ".join(r.stdout.split())
    assert "│ as is │ 0 ± 0 │ 0 – 0 │ off shift │" in out and "extra shift 22:00-24:00" in out, out


def test_another_batch_size_at_an_oven_as_an_alternative(tmp_path: Path) -> None:
    """The question a batch process raises: what if the oven took more parts at once? Its cycle per batch stays, so
    it makes more; a station that works one part at a time, or the size it has, is refused."""
    from twin.app.alternatives import alternatives

    doc = {"line": {"site": "s", "area": "a", "name": "heat-treat"}, "seed": 5, "duration": "2 d",
           "machine_types": {"m": {}},
           "stations": [{"name": "turn", "machine_type": "m", "cycle_time": {"dist": "uniform", "low": 50, "high": 70}},
                        {"name": "oven", "machine_type": "m", "cycle_time": "90 min", "buffer": 200,
                         "batch": {"size": 60, "min": 50, "wait": "30 min"}}]}
    f = tmp_path / "oven.yaml"
    f.write_text(yaml.safe_dump(doc, sort_keys=False))
    sc = load_scenario(f)
    options = dict(alternatives(sc, [], [], [], [], [], [], ["oven=40", "oven=80"]))
    assert options["oven: batch of 40"].stations[1].batch.model_dump() == {"size": 40, "min": 40, "wait": 1800.0}
    assert options["oven: batch of 80"].stations[1].batch.size == 80
    from twin.app.runner import simulate

    made = {label: simulate(alt, 0, sensors=False).kpis.set_index("kpi").loc["throughput [parts/h]", "value"]
            for label, alt in options.items()}
    assert made["oven: batch of 40"] < made["as is"] < made["oven: batch of 80"]
    assert_mistakes(["whatif", str(f), "--from", "duckdb:///nowhere.duckdb"], [
        (["--batch", "turn=80"], "--batch 'turn=80': station turn works one part at a time; the batch stations are "
                                 "oven"),
        (["--batch", "oven=60"], "station oven's batch holds 60 parts already"),
        (["--batch", "oven=1"], "give the parts a batch holds, 2 to 10,000, e.g. oven=120")])


def test_a_what_if_of_a_line_with_power_gives_each_alternative_s_energy_per_good_part(tmp_path: Path) -> None:
    """The heat-treatment line's machine types give their power: each alternative's kWh per good part beside its
    parts; a third lathe feeds the oven fuller batches (more parts for the oven's energy)."""
    scenario = ROOT / "tests" / "scenarios" / "heat_treat.yaml"
    run = tmp_path / "run"
    r = subprocess.run(twin_cmd("run", scenario, "--no-stream", "--duration", "1 d", "--out", run), cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "whatif.csv"
    r = subprocess.run(twin_cmd("whatif", scenario, "--from", f"duckdb:///{run / 'twin.duckdb'}", "--at",
                                "2026-01-05T12:00", "--duration", "8 h", "--replications", "5", "--machines",
                                "turn=3", "--out", out), cwd=ROOT, capture_output=True, text=True, timeout=300,
                       env={**os.environ, "COLUMNS": "200"})
    assert r.returncode == 0, r.stderr
    assert "kWh per good part" in r.stdout
    table = pd.read_csv(out).set_index("alternative")
    kwh = table["energy per good part [kWh]"]
    assert (kwh > 0).all() and kwh["turn: 3 machines"] != kwh["as is"]


def test_the_parts_in_the_machines_hands_as_the_state_is_read_are_carried() -> None:
    """A what-if carried the parts waiting in buffers but not the ones in the machines: every machine working as the
    state was read started its next part, and the line forecast one part less per working machine. Now each part in
    hand (a machine working, blocked, or down mid-part) waits at the head of its station's buffer and is worked
    again: three stations of one minute a part, all working, buffers empty, give their first parts at 1, 2 and 3
    minutes, not 3, 4 and 5, under either blocking; an assembly's unit in hand goes back to its feeders."""
    from twin.app.runner import simulate
    from twin.model import Line

    doc = {"line": {"site": "s", "area": "a", "name": "cells"}, "seed": 5, "duration": "1 h",
           "machine_types": {"m": {}},
           "stations": [{"name": name, "machine_type": "m", "cycle_time": "60 s", "buffer": 2} for name in "abc"]}
    doc["stations"][0].pop("buffer")

    def first(sc: Scenario, states: dict[str, str]) -> list[float]:
        out, _ = continue_from(sc, LineNow(taken="2026-01-05T14:00:00", buffers={"b": 0, "c": 0},
                                           machines={k: MachineNow(state=v, since=30) for k, v in states.items()}))
        return np.frombuffer(simulate(out, 0, sensors=False).line.stations[-1][0].log.finished).tolist()[:3]

    for blocking in ("after-service", "before-service"):
        sc = Scenario.model_validate({**doc, "blocking": blocking})
        assert first(sc, dict.fromkeys("abc", "working")) == [60.0, 120.0, 180.0], blocking
        assert first(sc, dict.fromkeys("abc", "starved")) == [180.0, 240.0, 300.0], blocking
        for held in ("blocked", "down"):
            assert first(sc, {"a": "working", "b": held, "c": "starved"}) == [120.0, 180.0, 240.0], (blocking, held)
    _, notes = continue_from(sc, LineNow(taken="2026-01-05T14:00:00", machines=dict.fromkeys("abc", MachineNow(
        state="working"))))  # the user is told; a's part is not counted: the source gives it a new one
    assert "parts in the machines' hands (working, blocked or down): 2, put back" in " ".join(notes), notes
    pumps = load_scenario(ROOT / "tests" / "scenarios" / "pumps.yaml")
    out, _ = continue_from(pumps, LineNow(taken="2026-01-05T10:00:00", machines={"assy": MachineNow(state="working")},
                                          buffers={"assy<shaft": 0, "assy<housing": 0}))
    assert {f: len(b.items) for f, b in Line(out).station_inputs[2].items()} == pumps.stations[2].assemble


def test_an_oven_working_as_the_state_is_read_finishes_its_batch_first() -> None:
    """An oven mid-cycle holds a batch, which a what-if dropped: it started empty, and the parts inside never came
    out. It now finishes a full batch (the parts inside are not read) for what is left of its cycle: 40 parts out of
    a 90-minute cycle begun 30 minutes ago, an hour from now; an oven standing idle starts empty as before."""
    doc = {"line": {"site": "s", "area": "a", "name": "heat-treat"}, "seed": 5, "duration": "4 h",
           "machine_types": {"m": {}},
           "stations": [{"name": "turn", "machine_type": "m", "cycle_time": "2 min"},
                        {"name": "oven", "machine_type": "m", "cycle_time": "90 min", "buffer": 200,
                         "batch": {"size": 40, "min": 10, "wait": "30 min"}}]}
    sc = Scenario.model_validate(doc)
    from twin.app.runner import simulate

    for state, first in (("working", [3600.0] * 40), ("starved", None)):
        now = LineNow(taken="2026-01-05T14:00:00", machines={"oven": MachineNow(state=state, since=1800)},
                      buffers={"oven": 0})
        out, _ = continue_from(sc, now)
        oven = simulate(out, 0, sensors=False).line.stations[1][0]
        done = np.frombuffer(oven.log.finished).tolist()
        if first is not None:
            assert done[:40] == first and oven.parts_done >= 40
        else:  # 10 parts (2 min each) after a 30-minute wait, 90 minutes later: none an hour from now
            assert done and min(done) > 3600


def test_a_long_lines_buffer_levels_are_told_by_the_ones_holding_parts() -> None:
    """An 80-station line's 79 levels, mostly 0, filled the screen: beyond 12 buffers only those holding parts are
    named, the empty ones counted."""
    from twin.app.cmd_plant import _levels_read

    assert _levels_read({"a": 0, "b": 2}) == "; buffer levels a 0, b 2"
    many = {f"s{i:02d}": (3 if i in (4, 11) else 0) for i in range(20)}
    assert _levels_read(many) == "; buffer levels of 20 buffers, 18 empty: s04 3, s11 3"
    assert _levels_read(dict.fromkeys(many, 0)) == "; buffer levels of 20 buffers, 20 empty"


def test_an_orders_last_part_is_the_nth_good_part_out_of_the_line() -> None:
    """`twin whatif --order N`: each replication's hours until the N-th good part left the line (nan: not within the
    run), so the share of runs that made the order is the share whose good parts reached N."""
    from twin.app.compare import order_cells, order_figures, whatif_task
    from twin.app.runner import replication_of

    sc = load_scenario(SCENARIO, {"duration": "4 h"})
    text = sc.model_dump_json(by_alias=True)
    line = replication_of(text, 0, None).line
    exit_ = np.frombuffer(line.exit)
    good = np.sort(exit_[(np.frombuffer(line.scrapped_at, dtype=np.int16) == -1) & ~np.isnan(exit_)])
    n = len(good)
    assert n > 50
    _, _, made = whatif_task(text, None, "as is", 0, orders=((n, None),))
    assert made["order 1 done [h]"] == pytest.approx(good[-1] / 3600) and made["good parts"] == pytest.approx(n)
    assert np.isnan(whatif_task(text, None, "as is", 0, orders=((n + 1, None),))[2]["order 1 done [h]"])
    # an order book: the second order is done with the line's (20 + 30)-th good part, the first with its 20th
    book = whatif_task(text, None, "as is", 0, orders=((20, None), (30, None)))[2]
    assert book["order 1 done [h]"] == pytest.approx(good[19] / 3600)
    assert book["order 2 done [h]"] == pytest.approx(good[49] / 3600)
    start = sc.start
    figures = order_figures(np.array([1.0, np.nan, 2.0, 3.0]), start)
    assert figures["order made"] == 0.75 and figures["order made low"] < 0.75 < figures["order made high"]
    assert figures["order done median"] == f"{start:%Y-%m-%d}T{start.hour + 2:02d}:{start.minute:02d}"
    assert figures["order done 90 %"] is None  # one run in four never made it: not 9 in 10 within the run
    end = start + pd.Timedelta(hours=4)
    assert order_cells(figures, end)[1] == f"{start + pd.Timedelta(hours=2):%a %H:%M} · after {end:%a %H:%M}"
    from twin.app.compare import all_orders

    # the book as a whole: runs 1 and 3 made the first by its due 2 h and the second at all; not 0.5 × 0.75
    book = all_orders([np.array([1.0, np.nan, 2.0, 3.0]), np.array([4.0, 4.0, 5.0, np.nan])], [2.0, None])
    assert book["all orders"] == 0.5 and book["all orders low"] < 0.5 < book["all orders high"]
    due = order_figures(np.array([1.0, np.nan, 2.0, 3.0]), start, due=2.0)  # due 2 h from now: 2 runs in 4 on time
    assert due["order on time"] == 0.5 and due["order on time low"] < 0.5 < due["order on time high"]
    assert order_cells(due, end)[:2] == ["75% (19%–99%)", "50% (7%–93%)"] and "order on time" not in figures


@pytest.mark.slow
def test_how_likely_an_order_is_made_from_the_state_now(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The plant manager's question: 60 good parts in the next 2 hours, as is and with one more technician. The
    share of runs that made it is the share whose good parts (the replications written beside the table) reached
    60; an order no run can make is made by none, and done by no time."""
    monkeypatch.setenv("LINETWIN_HOME", str(tmp_path / "home"))
    run = tmp_path / "run"
    r = subprocess.run(twin_cmd("run", SCENARIO, "--no-stream", "--duration", "8 h", "--out", run), cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    whatif = ["whatif", SCENARIO, "--from", f"duckdb:///{run / 'twin.duckdb'}", "--at", "2026-01-05T10:00",
              "--duration", "2 h", "--replications", 20, "--extra-crew", "maintenance"]
    r = subprocess.run(twin_cmd(*whatif, "--order", 60, "--out", tmp_path / "o.csv"), cwd=ROOT, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "an order of 60 good" in r.stdout and "order made" in r.stdout
    table = pd.read_csv(tmp_path / "o.csv").set_index("alternative")
    reps = pd.read_csv(tmp_path / "o-replications.csv")
    for alternative, row in table.iterrows():
        assert row["order made"] == pytest.approx((reps[alternative] >= 60).mean())
        assert row["order made low"] <= row["order made"] <= row["order made high"]
    assert table["order made"].max() > 0
    r = subprocess.run(twin_cmd(*whatif, "--order", 10**6, "--out", tmp_path / "never.csv"), cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    never = pd.read_csv(tmp_path / "never.csv")
    assert (never["order made"] == 0).all() and never["order done median"].isna().all()
    assert "after Mon 12:00" in r.stdout
    # an order book: 30 due at 11:00, then 30 more by the end; the second is made where 60 good parts were
    (tmp_path / "erp.csv").write_text("order,quantity,due\nK-7,30,2026-01-05 11:00\n")  # the ERP's book, then one
    r = subprocess.run(twin_cmd(*whatif, "--orders", tmp_path / "erp.csv", "--order", 30, "--out",
                                tmp_path / "book.csv"),
                       cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "250"})
    assert r.returncode == 0, r.stderr
    assert "the orders, each product's filled in turn" in r.stdout and "1: K-7 30 good parts by Mon 11:00" in r.stdout
    book = pd.read_csv(tmp_path / "book-orders.csv")
    assert book.reference.iloc[0] == "K-7" and book.reference.isna().iloc[-1]
    reps = pd.read_csv(tmp_path / "book-replications.csv")
    assert len(book) == 2 * len(reps.columns[1:]) and set(book.due.dropna()) == {"2026-01-05T11:00"}
    for row in book.to_dict("records"):
        assert row["order made"] == pytest.approx((reps[row["alternative"]] >= 30 * row["order"]).mean())
        if row["order"] == 1:
            assert row["order on time low"] <= row["order on time"] <= min(row["order made"], row["order on time high"])
    assert book["order made"].max() > 0 and "order made" not in pd.read_csv(tmp_path / "book.csv").columns
    assert (tmp_path / "book-orders.png").stat().st_size > 5000  # the orders' chart beside their table
    whole = pd.read_csv(tmp_path / "book.csv").set_index("alternative")["all orders"]  # both orders, each in time
    on_time = book[book.order == 1].set_index("alternative")["order on time"]
    assert (whole <= on_time).all() and "all 2 orders" in r.stdout


def test_an_order_of_one_product_counts_its_parts_only(tmp_path: Path) -> None:
    """`--order juice-10=N`: a mixed line's order is of one product; the other products' parts do not count."""
    from twin.app.compare import whatif_task
    from twin.app.runner import replication_of

    sc = load_scenario(ROOT / "scenarios" / "packaging.yaml", {"duration": "1 d", "warmup": 0})
    text = sc.model_dump_json(by_alias=True)
    line = replication_of(text, 0, None).line
    exit_ = np.frombuffer(line.exit)
    juice = (np.frombuffer(line.product, dtype=np.int8) == line.product_names.index("juice-10"))
    good = np.sort(exit_[(np.frombuffer(line.scrapped_at, dtype=np.int16) == -1) & ~np.isnan(exit_) & juice])
    assert 100 < len(good) < np.count_nonzero(~np.isnan(exit_)) / 2
    done = whatif_task(text, None, "as is", 0, orders=((100, "juice-10"),))[2]["order 1 done [h]"]
    assert done == pytest.approx(good[99] / 3600)
    # an order book: juice's second order waits for its first; another product's order counts its own parts
    book = whatif_task(text, None, "as is", 0, orders=((60, "juice-10"), (5, "still-05"), (40, "juice-10")))[2]
    assert book["order 1 done [h]"] == pytest.approx(good[59] / 3600)
    assert book["order 3 done [h]"] == pytest.approx(good[99] / 3600)
    products = np.frombuffer(line.product, dtype=np.int8)
    still = exit_[line.good_out() & (products == line.product_names.index("still-05"))]
    assert book["order 2 done [h]"] == pytest.approx(np.sort(still)[4] / 3600)
    assert_mistakes(["whatif", str(ROOT / "scenarios" / "packaging.yaml"), "--from",
                     f"duckdb:///{tmp_path / 'none.duckdb'}"], [
        (["--order", "0"], "--order '0': write the good parts the order asks for, 1 to 1,000,000,000, or PRODUCT=N "
                           "for one product, and @WHEN it is due if it is, e.g. 400 or still-05=400@Tue 14:00"),
        (["--order", "beer=5"], "--order 'beer=5': the line makes still-05, sparkling-05, juice-10"),
        (["--order", "juice-10=many"], "--order 'juice-10=many': write the good parts"),
        (["--order", "juice-10=5@"], "--order 'juice-10=5@': say when it is due after @: a time on the line's clock"),
        (["--order", "juice-10=5", "--order", "300"],
         "--order 'juice-10=5'; --order '300': an order of any product would count the other orders' parts too: "
         "give each its product")])


@settings(max_examples=300, deadline=None)
@given(spec=st.text(alphabet="0123456789:@= -TMonTueFrijuice", max_size=24))
def test_any_order_written_is_read_or_named(spec: str) -> None:
    """A fuzzed --order: read (good parts, a product the line makes, a due time inside the run) or refused with the
    CLI's error, never a traceback."""
    import datetime as dt

    import typer

    from twin.app.cmd_plant import _due, _orders

    sc = load_scenario(ROOT / "scenarios" / "packaging.yaml")
    start = dt.datetime(2026, 1, 5, 14, 30)
    try:
        (n, product, due), = _orders([spec], sc)
        when = _due(spec, due, start, start + dt.timedelta(days=2)) if due else None
    except typer.Exit:
        return
    assert 1 <= n <= 10**9 and product in (None, *(p.name for p in sc.products))
    assert when is None or start < when <= start + dt.timedelta(days=2)


def test_an_erp_order_book_is_read_as_orders_in_turn(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`twin whatif --orders book.csv`: an ERP export in its own words (German column names, semicolons, dates as
    06.01.2026 14:00) or an Excel workbook (dates as Excel's) gives the orders in its rows' order; a row that is no
    order is named by its row, a book without quantities by its columns."""
    import typer

    from twin.app.cmd_plant import _order_book, _orders

    sc = load_scenario(ROOT / "scenarios" / "packaging.yaml")
    book = tmp_path / "auftraege.csv"
    book.write_text("Auftrag;Artikel;Menge;Liefertermin\nA-1042;juice-10;5000;06.01.2026 14:00\n"
                    "A-1043;still-05;300;\nA-1044;juice-10;1.200;2026-01-07T06:00\n", encoding="cp1252")
    specs, where, refs = _order_book(book, None)
    assert specs[:2] == ["juice-10=5000@2026-01-06T14:00", "still-05=300"] and refs == ["A-1042", "A-1043", "A-1044"]
    assert where[0] == f"--orders {book}: row 2"
    with pytest.raises(typer.Exit):  # 1.200: a thousands separator, or a decimal? neither is a count of parts
        _orders(specs, sc, where)
    assert f"--orders {book}: row 4: write the good parts" in " ".join(capsys.readouterr().err.split())
    frame = pd.DataFrame({"order": ["B-1", "B-2"], "product": ["juice-10", "still-05"], "quantity": [400.0, 50.0],
                          "due": pd.to_datetime(["2026-01-06 14:00", "2026-01-06 22:00"])})
    frame.to_excel(tmp_path / "book.xlsx", index=False)
    specs, where, refs = _order_book(tmp_path / "book.xlsx", None)
    assert specs == ["juice-10=400@2026-01-06T14:00", "still-05=50@2026-01-06T22:00"] and refs == ["B-1", "B-2"]
    assert _orders(specs, sc, where) == [(400, "juice-10", "2026-01-06T14:00"), (50, "still-05", "2026-01-06T22:00")]
    (tmp_path / "erp.csv").write_text("Auftrag;Material;Menge\nA-7;4713;600\n")  # material numbers, as --products
    assert _order_book(tmp_path / "erp.csv", None, {"4713": "juice-10"})[0] == ["juice-10=600"]
    # an order under way: the ERP's confirmed good parts (Gutmenge) made already, the order asks for the rest; one
    # made in full is left out, said
    (tmp_path / "under_way.csv").write_text("Auftrag;Artikel;Menge;Gutmenge\nA-1;juice-10;600;450\n"
                                            "A-0;still-05;300;300\nA-2;still-05;900;\n")
    specs, where, refs = _order_book(tmp_path / "under_way.csv", None)
    assert specs == ["juice-10=150", "still-05=900"] and refs == ["A-1", "A-2"] and where[1].endswith("row 4")
    assert "row 3: all 300 good parts made already (Gutmenge 300): left out" in " ".join(
        capsys.readouterr().err.split())
    (tmp_path / "odd_made.csv").write_text("order,quantity,made\nB-1,600,-4\n")
    with pytest.raises(typer.Exit):
        _order_book(tmp_path / "odd_made.csv", None)
    assert "row 2, column made: '-4' is not a count of good parts made" in " ".join(capsys.readouterr().err.split())
    (tmp_path / "odd.csv").write_text("what,when\nx,y\n")
    with pytest.raises(typer.Exit):
        _order_book(tmp_path / "odd.csv", None)
    assert "no column of the good parts each order asks for; its columns are what, when" in " ".join(
        capsys.readouterr().err.split())


@settings(max_examples=150, deadline=None)
@given(rows=st.lists(st.tuples(st.sampled_from(["A-1", "", "x;y", "ä"]),
                               st.sampled_from(["juice-10", "still-05", "", "beer", "juice-10 "]),
                               st.sampled_from(["5", "0", "-3", "1.5", "2.0", "", "1e3", "many", "4000000000"]),
                               st.sampled_from(["", "06.01.2026 14:00", "2026-01-06T14:00", "31.02.2026", "Tue 14:00",
                                                "07.01.2026", "x", "3", "9999", "-1", "inf", "1e3"])), max_size=6),
       header=st.sampled_from(["order;product;quantity;due", "Auftrag;Artikel;Menge;Liefertermin", "a;b;c;d",
                               "order;product;qty", "Auftrag;Artikel;Menge;Gutmenge"]),
       raw=st.binary(max_size=40))
def test_any_order_book_is_read_or_named(tmp_path_factory: pytest.TempPathFactory, rows: list[tuple[str, ...]],
                                         header: str, raw: bytes) -> None:
    """A fuzzed order book (its cells, headers and stray bytes): orders read with their due times inside the run, or
    refused with the CLI's error naming the file, never a traceback."""
    import datetime as dt

    import typer

    from twin.app.cmd_plant import _due, _order_book, _orders

    sc = load_scenario(ROOT / "scenarios" / "packaging.yaml")
    path = tmp_path_factory.mktemp("book") / "book.csv"
    path.write_bytes((header + "\n" + "\n".join(";".join(r) for r in rows) + "\n").encode() + raw)
    start = dt.datetime(2026, 1, 5, 14, 30)
    try:
        specs, where, _ = _order_book(path, None)
        got = _orders(specs, sc, where)
        dues = [_due(spec, due, start, start + dt.timedelta(days=3), said) if due else None
                for (_, _, due), spec, said in zip(got, specs, where)]
    except typer.Exit:
        return
    assert all(1 <= n <= 10**9 for n, _, _ in got) and all(d is None or d > start for d in dues)


def test_an_orders_due_time_is_read_on_the_lines_clock_inside_the_run(capsys: pytest.CaptureFixture[str]) -> None:
    """`--order N@WHEN`: 18:00 and Tue 14:00 are the first such times after the state's; a time past, after the run's
    end or no time at all is named with the run's span."""
    import datetime as dt

    import typer

    from twin.app.cmd_plant import _due

    start = dt.datetime(2026, 1, 5, 14, 30)  # a Monday
    end = start + dt.timedelta(days=3)
    assert _due("5@18:00", "18:00", start, end) == dt.datetime(2026, 1, 5, 18, 0)
    assert _due("5@9:15", "9:15", start, end) == dt.datetime(2026, 1, 6, 9, 15)  # the next morning
    assert _due("5@Tue 14:00", "Tue 14:00", start, end) == dt.datetime(2026, 1, 6, 14, 0)
    assert _due("5@mon 15:00", "mon 15:00", start, end) == dt.datetime(2026, 1, 5, 15, 0)
    assert _due("5@2026-01-07T06:00", "2026-01-07T06:00", start, end) == dt.datetime(2026, 1, 7, 6, 0)
    for text, message in (("2026-01-05T12:00", "it is past"), ("Fri 10:00", "look further ahead (--duration)"),
                          ("tomorrow", "'tomorrow' is no time"), ("25:00", "'25:00' is no time")):
        with pytest.raises(typer.Exit):
            _due(f"5@{text}", text, start, end)
        assert message in " ".join(capsys.readouterr().err.split()), text


def test_a_what_if_continues_the_release_plan_in_its_campaign_under_way(tmp_path: Path) -> None:
    """A mixed line's what-if restarted its release plan at the first campaign, whatever the line was making: now the
    campaign under way (the product its entry stations made last, and how many in a row, from a part log naming each
    part's product) goes on where it stood, and the parts already in its buffers are of it."""
    import datetime as dt

    from tests.helpers import const, scenario
    from twin.app.cmd_plant import _release_at
    from twin.app.runner import simulate
    from twin.scenario import ReleaseNow

    sc = scenario([{"name": "a", "cycle_time": const(10)}, {"name": "b", "cycle_time": const(10), "initial": 4}],
                  products=[{"name": "p1"}, {"name": "p2"}],
                  release=[{"product": "p1", "parts": 10}, {"product": "p2", "parts": 5}],
                  start="2026-01-05T06:00:00", duration="30 min")
    now = LineNow(taken=dt.datetime(2026, 1, 5, 6), release=ReleaseNow(product="p2", made=3))
    resumed, notes = continue_from(sc, now)
    line = simulate(resumed, 0, sensors=False).line
    made = np.frombuffer(line.product, dtype=np.int8).tolist()
    assert made[:4] == [1] * 4  # the 4 parts in b's buffer: of the campaign under way, not taken from it
    assert made[4:6] == [1, 1] and made[6:16] == [0] * 10 and made[16:21] == [1] * 5  # 2 p2 left, then the plan
    assert simulate(sc, 0, sensors=False).line.product[:4].tolist() == [0] * 4  # a new line: from the first campaign
    gone, notes = continue_from(sc, now.model_copy(update={"release": ReleaseNow(product="p3", made=1)}))
    assert gone.now is not None and gone.now.release is None and "no campaign of p3" in notes[-1]
    t = pd.Timestamp("2026-01-05 06:00") + pd.to_timedelta(np.arange(9) * 10.0, unit="s")
    log = pd.DataFrame({"timestamp": t, "machine": "a", "product": ["p1"] * 3 + ["p2"] * 6})
    assert _release_at(sc, log, t[7]) == ReleaseNow(product="p2", made=5)  # by then: 5 of p2 in a row
    assert _release_at(sc, log.assign(machine="b"), t[7]) is None  # only the entry stations release


def test_a_machine_continued_sets_up_from_the_product_it_made_last() -> None:
    """A mixed line's what-if started every machine with no product: the first part of another product than the one
    it was making needed no setup. A state naming each machine's last product (MachineNow.product, from a part log)
    makes the first different part set up first; a product the line does not make is said and dropped."""
    import datetime as dt

    from tests.helpers import const, scenario
    from twin.app.cmd_plant import _set_up_for
    from twin.app.runner import simulate

    sc = scenario([{"name": "a", "cycle_time": const(10), "setup_matrix": {"p1": {"p2": const(300)}}}],
                  products=[{"name": "p1"}, {"name": "p2"}], release=["p2"], start="2026-01-05T06:00:00",
                  duration="30 min")

    def first_setups(product: str | None) -> list[str]:
        now = LineNow(taken=dt.datetime(2026, 1, 5, 6), machines={"a": MachineNow(state="working", product=product)})
        resumed = continue_from(sc, now)[0]
        line = simulate(resumed, 0, sensors=False).line
        return [e.detail for e in line.events if e.kind == "changeover_start"]

    assert first_setups("p1") == ["p1 -> p2"] and first_setups("p2") == [] and first_setups(None) == []
    _, notes = continue_from(sc, LineNow(taken=dt.datetime(2026, 1, 5, 6),
                                         machines={"a": MachineNow(state="working", product="p9")}))
    assert "the line makes no p9: the machines that worked it last set up for none" in notes
    t = pd.Timestamp("2026-01-05 06:00") + pd.to_timedelta(np.arange(6) * 10.0, unit="s")
    made = pd.DataFrame({"timestamp": t, "machine": ["a", "b"] * 3, "product": ["p1", "p2", "p2", "p1", "p1", "p2"]})
    assert _set_up_for(made, t[3]) == {"a": "p2", "b": "p1"} and _set_up_for(made, t[5]) == {"a": "p1", "b": "p2"}


@pytest.mark.slow
def test_a_what_if_from_a_status_log_and_a_part_log_naming_products_goes_on_with_the_campaign(tmp_path: Path) -> None:
    """`twin whatif packaging.yaml --from status.csv --parts parts.csv`: the part log's products (material numbers,
    mapped with --products) tell the campaign under way at the log's end, and the what-if goes on with it."""
    from tests.test_fit import _product_parts, status_log
    from twin.app.runner import simulate

    sc = load_scenario(ROOT / "scenarios" / "packaging.yaml", {"duration": "1 d", "warmup": 0})
    run = simulate(sc, 0, sensors=False)
    status_log(run).to_csv(tmp_path / "status.csv", index=False)
    made = _product_parts(run, "unscrambler", [p.name for p in sc.products])
    filler = _product_parts(run, "filler", [p.name for p in sc.products])  # the filler sets up between products
    material = {"still-05": "4711", "sparkling-05": "4712", "juice-10": "4713"}
    pd.concat([made, filler]).assign(product=lambda d: d["product"].map(material)).to_csv(tmp_path / "parts.csv",
                                                                                         index=False)
    by = made[made.timestamp <= pd.Timestamp("2026-01-05 18:00")]["product"]  # what it had made by 18:00
    last = by.iloc[-1]
    in_a_row = int((by[::-1].ne(last).cumsum() == 0).sum())
    r = subprocess.run(twin_cmd("whatif", ROOT / "scenarios" / "packaging.yaml", "--from", tmp_path / "status.csv",
                                "--at", "2026-01-05T18:00",
                                "--parts", tmp_path / "parts.csv", "--products",
                                ", ".join(f"{v}={k}" for k, v in material.items()), "--duration", "2 h",
                                "--replications", 2), cwd=ROOT, capture_output=True, text=True, timeout=300,
                       env={**os.environ, "COLUMNS": "250"})
    assert r.returncode == 0, r.stderr
    said = " ".join(r.stderr.split())
    assert f"the release plan continues in its campaign of {last}: {in_a_row:,} of" in said, said
    set_up = filler[filler.timestamp <= pd.Timestamp("2026-01-05 18:00")]["product"].iloc[-1]
    assert "note: set up for the product each machine made last:" in said and f"filler {set_up}" in said, said


def test_releasing_the_order_book_is_asked_for_plainly(tmp_path: Path) -> None:
    """`--release book|due`: the entries release the book's orders (in its order, or by due date) instead of the
    line's plan; each further --release is an alternative. What cannot be released so is named before the state is
    read: no orders, no due dates to sort by, an order of any product, a line of one product, a way given twice, and
    a file with its own `orders:` beside a what-if's book, which would count their parts twice."""
    import datetime as dt

    from twin.app.cmd_plant import Order, _released
    from twin.scenario import ReleaseNow

    packaging = ROOT / "scenarios" / "packaging.yaml"
    sc = load_scenario(packaging)
    book = [Order(1500, "juice-10", dt.datetime(2026, 1, 5, 18), "juice-10=1500@18:00", "A-1"),
            Order(3000, "still-05", dt.datetime(2026, 1, 5, 14), "still-05=3000@14:00"),
            Order(2000, "sparkling-05", None, "sparkling-05=2000")]
    due, place = _released(sc, book, "due")
    assert due.orders is not None and [(o.product, o.parts, o.order) for o in due.orders] == [
        ("still-05", 3000, ""), ("juice-10", 1500, "A-1"), ("sparkling-05", 2000, "")]  # no due date: last
    assert place == [1, 0, 2] and _released(sc, book, "book")[1] == [0, 1, 2] and _released(sc, book, "line")[0] is sc
    assert _released(due, book, "line")[0].orders is None  # the plan alone: a file's orders are the book it fills
    # fewest setups: a product's orders together (by due date), the next product the quickest to change to
    five = [Order(1000, p, dt.datetime(2026, 1, 5, h), f"{p}=1000") for p, h in (
        ("juice-10", 14), ("still-05", 16), ("juice-10", 20), ("sparkling-05", 21), ("still-05", 23))]
    grouped, _ = _released(sc, five, "setups")  # from nothing: the earliest due's product first
    assert grouped.orders is not None and [o.product for o in grouped.orders] == [
        "juice-10", "juice-10", "still-05", "still-05", "sparkling-05"]  # juice to still or sparkling: alike, 111.7 min
    on_still = sc.model_copy(update={"now": LineNow(taken=dt.datetime(2026, 1, 5, 10),
                                                    release=ReleaseNow(product="still-05", made=5))})
    grouped, place = _released(on_still, five, "setups")  # still under way: still (0), sparkling (15 min), juice
    assert grouped.orders is not None and [o.product for o in grouped.orders] == [
        "still-05", "still-05", "sparkling-05", "juice-10", "juice-10"] and place == [3, 0, 4, 2, 1]
    (tmp_path / "own.yaml").write_text(packaging.read_text() + "orders: [{product: juice-10, parts: 500}]\n")
    r = subprocess.run(twin_cmd("validate", tmp_path / "own.yaml"), cwd=ROOT, capture_output=True, text=True,
                       timeout=60, env={**os.environ, "COLUMNS": "250"})
    assert r.returncode == 0 and "1 order before the release plan (500 good parts)" in " ".join(r.stdout.split())
    store = ["--from", f"duckdb:///{tmp_path / 'none.duckdb'}"]
    assert_mistakes(["whatif", str(packaging), *store], [
        (["--release", "book"], "--release book releases an order book: give its orders with --order"),
        (["--release", "soon", "--order", "juice-10=5"], "--release 'soon': write line (the line's own release "
                                                         "plan), book"),
        (["--release", "due", "--order", "juice-10=5"], "--release due releases the orders by due date, and none "
                                                        "has one"),
        (["--release", "book", "--order", "5"], "--release book: the line releases each order's product, so every "
                                                "order names one, e.g. --order still-05=400"),
        (["--release", "book", "--release", "book", "--order", "juice-10=5"], "--release book is given twice")])
    assert_mistakes(["whatif", str(SCENARIO), *store, "--order", "5", "--release", "book"],
                    [([], "the line makes one kind of part (the scenario has no products:), so it makes its orders "
                          "in turn whatever it releases")])
    (tmp_path / "assembly.yaml").write_text(yaml.safe_dump({
        "line": {"site": "s", "area": "a", "name": "l"}, "seed": 1, "duration": "1 d", "machine_types": {"m": {}},
        "products": [{"name": "p"}, {"name": "q"}],
        "stations": [{"name": "a", "machine_type": "m", "cycle_time": 5, "next": "c"},
                     {"name": "b", "machine_type": "m", "cycle_time": 5, "next": "c"},
                     {"name": "c", "machine_type": "m", "cycle_time": 5, "assemble": {"a": 1, "b": 1}}]}))
    assert_mistakes(["whatif", str(tmp_path / "assembly.yaml"), *store, "--order", "p=5", "--release", "book"],
                    [([], "--release: a line with an assembly releases parts at each feeder")])
    assert_mistakes(["whatif", str(tmp_path / "own.yaml"), *store, "--order", "juice-10=5"],
                    [([], "orders: the scenario releases its own orders, and the what-if's order book would count "
                          "their parts too: release the book instead (--release book)")])


@pytest.mark.slow
def test_a_what_if_releases_the_order_book_by_due_date_beside_the_books_order(tmp_path: Path) -> None:
    """The planner's question: three orders due at 18:00, 14:00 and 21:00; released in the book's order, the order
    due first waits for the one before it; released by due date it is made first. The book's order is the as-is,
    by due date an alternative, each order's figures its own parts'."""
    from tests.test_fit import status_log
    from twin.app.runner import simulate

    sc = load_scenario(ROOT / "scenarios" / "packaging.yaml", {"duration": "1 d", "warmup": 0})
    status_log(simulate(sc, 0, sensors=False)).to_csv(tmp_path / "status.csv", index=False)
    r = subprocess.run(twin_cmd("whatif", ROOT / "scenarios" / "packaging.yaml", "--from", tmp_path / "status.csv",
                                "--at", "2026-01-05T10:00", "--duration", "12 h", "--replications", 6,
                                "--order", "juice-10=1500@18:00", "--order", "still-05=3000@14:00",
                                "--order", "sparkling-05=2000@21:00", "--release", "book", "--release", "due",
                                "--release", "setups",
                                "--out", tmp_path / "w.csv"),
                       cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "250"})
    assert r.returncode == 0, r.stderr
    assert "the orders, each released in turn" in r.stdout and "release: by due date" in r.stdout
    orders = pd.read_csv(tmp_path / "w-orders.csv")
    assert set(orders.alternative) == {"as is", "release: by due date", "release: fewest setups"}
    still = orders[orders["product"] == "still-05"].set_index("alternative")
    assert still.loc["release: by due date", "order done median"] < still.loc["as is", "order done median"]
    assert still.loc["release: by due date", "order on time"] > still.loc["as is", "order on time"]
    # a scenario that releases its own orders (`orders:`): the what-if's book is theirs, with their numbers
    own = tmp_path / "own.yaml"
    own.write_text((ROOT / "scenarios" / "packaging.yaml").read_text()
                   + "orders: [{product: juice-10, parts: 500, order: A-77, due: 2026-01-05T12:00},\n"
                     "         {product: still-05, parts: 800}]\n")
    r = subprocess.run(twin_cmd("whatif", own, "--from", tmp_path / "status.csv", "--at", "2026-01-05T10:00",
                                "--duration", "4 h", "--replications", 2, "--release", "book", "--release", "line"),
                       cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "250"})
    assert r.returncode == 0, r.stderr
    assert "1: A-77 juice-10 × 500 by Mon 12:00" in r.stdout and "release: the line's plan" in r.stdout
    assert "on time" in r.stdout


def test_a_stores_product_records_tell_a_mixed_lines_setups_and_campaign(tmp_path: Path) -> None:
    """What `twin connect` stores of a mixed line (each machine's product, its part counters) gives a what-if from
    the store each machine's setup and the release plan's campaign under way, with the parts its entry machine
    counted since it changed over (it restarted the plan and set no machine up for anything)."""
    from sensors.snapshot import from_store
    from sensors.store import PRODUCT_COLUMNS, READING_COLUMNS, STATE_COLUMNS, open_store
    from twin.scenario import ReleaseNow

    sc = load_scenario(ROOT / "scenarios" / "packaging.yaml")
    t0 = pd.Timestamp("2026-01-05 06:00")
    db = open_store(f"duckdb:///{tmp_path / 'plant.duckdb'}")
    try:
        db.write_states(pd.DataFrame([("plant", 0, m, t0, "working", "") for st in sc.stations
                                      for m in st.machine_names], columns=STATE_COLUMNS))
        db.write_products(pd.DataFrame([("plant", 0, "unscrambler", t0, "still-05"),
                                        ("plant", 0, "filler", t0, "still-05"),
                                        ("plant", 0, "unscrambler", t0 + pd.Timedelta(minutes=60), "juice-10"),
                                        ("plant", 0, "capper", t0, "beer")], columns=PRODUCT_COLUMNS))
        db.write(pd.DataFrame([("plant", 0, "unscrambler", "good_parts", t0 + pd.Timedelta(minutes=10 * k), 100.0 * k)
                               for k in range(10)], columns=READING_COLUMNS))  # 100 parts each 10 min
        now = from_store(db, sc, "plant.duckdb", at=(t0 + pd.Timedelta(minutes=90)).to_pydatetime())
        early = from_store(db, sc, "plant.duckdb", at=(t0 + pd.Timedelta(minutes=30)).to_pydatetime())
    finally:
        db.close()
    assert now.machines["unscrambler"].product == "juice-10" and now.machines["filler"].product == "still-05"
    assert now.release == ReleaseNow(product="juice-10", made=300)  # counted at 70, 80 and 90 min
    assert early.machines["unscrambler"].product == "still-05" and early.release == ReleaseNow(product="still-05",
                                                                                               made=300)
    resumed, notes = continue_from(sc, now)
    assert resumed.now is not None and resumed.now.machines["capper"].product is None  # the line makes no beer
    assert "the line makes no beer: the machines that worked it last set up for none" in notes
    r = subprocess.run(twin_cmd("whatif", ROOT / "scenarios" / "packaging.yaml", "--from",
                                f"duckdb:///{tmp_path / 'plant.duckdb'}", "--duration", "1 h", "--replications", 2),
                       cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "250"})
    assert r.returncode == 0, r.stderr
    said = " ".join(r.stderr.split())
    assert "set up for the product each machine was on: filler still-05, unscrambler juice-10" in said, said
    assert "the release plan continues in its campaign of juice-10: 300 of 2,000 released" in said


@pytest.mark.slow
def test_a_mixed_lines_run_stores_what_each_machine_is_set_up_for(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """A twin's own run of a mixed line stores its machines' product changes as a plant's connector does (those
    that matter to a what-if: machines that set up between products, the entry machines of a release plan), the
    same in process, over several processes and streamed through a broker; a what-if from it starts each machine set
    up for its product and the plan in the campaign under way."""
    from sensors.store import open_store
    from twin.app.runner import simulate

    packaging = ROOT / "scenarios" / "packaging.yaml"
    sc = load_scenario(packaging, {"duration": "12 h", "warmup": 0})
    line = simulate(sc, 0, sensors=False).line
    start = pd.Timestamp(sc.start.replace(tzinfo=None))
    want = []
    for m in line.machines:
        if m.name in ("filler", "labeller", "unscrambler"):  # setups at filler and labeller; the entry
            made = np.frombuffer(m.log.begun_product, dtype=np.int8)
            first = np.flatnonzero(np.append(True, made[1:] != made[:-1]))
            want += [(m.name, start + pd.Timedelta(milliseconds=round(np.frombuffer(m.log.begun)[k] * 1000)),
                      line.product_names[made[k]]) for k in first]
    assert len(want) > 6
    runs = {"direct": ["--no-stream"], "processes": ["--no-stream", "--replications", 2, "--jobs", 2],
            "streamed": ["--broker", mosquitto.url]}
    for name, extra in runs.items():
        r = subprocess.run(twin_cmd("run", packaging, "--duration", "12 h", "--warmup", "0", *extra,
                                    "--out", tmp_path / name), cwd=ROOT, capture_output=True, text=True, timeout=600,
                           env={**os.environ, "LINETWIN_HOME": str(tmp_path / "home")})
        assert r.returncode == 0, r.stderr[-3000:]
        store = open_store(f"duckdb:///{tmp_path / name / 'twin.duckdb'}", read_only=True)
        try:
            got = store.products(replication=0)
        finally:
            store.close()
        rows = sorted(zip(got.machine, got.ts.astype("datetime64[ms]"), got["product"]))
        assert rows == sorted((m, t.to_datetime64().astype("datetime64[ms]"), p) for m, t, p in want), name
    r = subprocess.run(twin_cmd("whatif", packaging, "--from", f"duckdb:///{tmp_path / 'direct' / 'twin.duckdb'}",
                                "--at", "2026-01-05T15:00", "--duration", "1 h", "--replications", 2),
                       cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "250"})
    assert r.returncode == 0, r.stderr
    then = {m: p for m, t, p in sorted(want, key=lambda x: x[1]) if t <= pd.Timestamp("2026-01-05 15:00")}
    said = " ".join(r.stderr.split())
    assert "set up for the product each machine was on: " + ", ".join(f"{m} {p}" for m, p in sorted(then.items())) \
        in said, said
    assert f"the release plan continues in its campaign of {then['unscrambler']}" in said
