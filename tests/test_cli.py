"""The `twin` command as a user runs it: a real process, real files, exit codes, no tracebacks."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import ROOT, assert_mistakes

BUNDLED = sorted(Path("scenarios").glob("*.yaml"))


def twin(*args: str) -> subprocess.CompletedProcess[str]:
    """`twin` in a bare environment (no user settings), but with the tests' linetwin home: without it every run a
    test made was listed in the user's own runs index, which their dashboard reads."""
    return subprocess.run([sys.executable, "-m", "twin.app.cli", *args], capture_output=True, text=True, timeout=300,
                          env={"COLUMNS": "120", "PATH": "/usr/bin:/bin", "LINETWIN_HOME": os.environ["LINETWIN_HOME"]})


def test_validate_bundled() -> None:
    r = twin("validate", *map(str, BUNDLED))
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("ok ") == len(BUNDLED)
    assert "cnc_cell.yaml: line plant-linz/machining/cnc-cell-2, 4 stations, 6 machines, planned 80 h a week" in \
        " ".join(r.stdout.split())  # what its calendar means: two shifts, Monday to Friday
    # what a mixed-model line releases, and the station that limits a line by design, before it is run
    assert "packaging.yaml: line plant-hamburg/hall-3/packaging-1, 5 stations, 5 machines, planned 80 h a week, 3 " \
           "products (still-05 50%, sparkling-05 33%, juice-10 17%), constraint by design filler" in \
        " ".join(r.stdout.split())


def test_validate_a_folder_of_scenarios(tmp_path: Path) -> None:
    """`twin validate scenarios/` (a repository's CI check of its lines) said the folder could not be read as a file;
    it checks every .yaml and .yml file in it and its subfolders, and an empty folder is an error, not 'all ok'."""
    (tmp_path / "lines" / "hall-3").mkdir(parents=True)
    (tmp_path / "lines" / "hall-3" / "pumps.yml").write_text(Path("tests/scenarios/pumps.yaml").read_text())
    (tmp_path / "lines" / "notes.txt").write_text("not a scenario")
    (tmp_path / "empty").mkdir()
    r = twin("validate", "scenarios", str(tmp_path / "lines"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("ok ") == len(BUNDLED) + 1 and "pumps.yml: line plant1/assembly/pump-line" in " ".join(
        r.stdout.split())  # a long path wraps
    r = twin("validate", str(tmp_path / "empty"))
    assert r.returncode == 2 and "a folder without scenario files" in r.stderr and "Traceback" not in r.stderr


def test_help_lists_each_command_in_words_that_wrap_as_one_paragraph() -> None:
    """`twin --help` listed a command whose docstring's first paragraph spans two source lines with a break in the
    middle of its sentence ('family by AIC),' then ' write the fitted scenario'); each command's summary now wraps
    as one paragraph."""
    r = subprocess.run([sys.executable, "-m", "twin.app.cli", "--help"], capture_output=True, text=True, timeout=60,
                       env={"COLUMNS": "250", "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr
    commands = r.stdout.split("Commands:")[1].splitlines()
    listed = {line.split()[0]: line for line in commands if re.match(r"  \S", line)}
    assert "fit" in listed and "write the fitted scenario" in listed["fit"], r.stdout
    assert "members on --jobs local processes" in listed["train"], r.stdout
    continuation = [line for line in commands if re.match(r" {5,}\S", line)]
    assert not continuation, continuation  # at 250 columns every summary fits on its own line
    # help text is shown as written: Rich's markup took '[user:pass@]' and '[default: …]' for tags, and dropped them
    for command, text in ((["run"], "mqtt://[user:pass@]host:port"),
                          (["plan"], "pilot replications [default: the scenario's, at least 5]")):
        r = subprocess.run([sys.executable, "-m", "twin.app.cli", *command, "--help"], capture_output=True, text=True,
                           timeout=60, env={"COLUMNS": "250", "PATH": "/usr/bin:/bin"})
        assert text in r.stdout, r.stdout


def test_help_and_validate_load_no_heavy_modules() -> None:
    """`twin --help` and `twin validate` start fast: no scipy, torch, streamlit, pandas or store client is imported."""
    probe = ("import sys\nfrom twin.app.cli import app\n"
             "for args in (['--help'], ['validate', 'scenarios/bottling.yaml']):\n"
             "    try:\n        app(args)\n    except SystemExit as e:\n        assert e.code == 0, (args, e.code)\n"
             "print(sorted(m for m in ('scipy', 'torch', 'streamlit', 'pandas', 'duckdb', 'paho', 'sklearn') "
             "if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "[]"


def test_training_mistakes_fail_before_torch_loads(tmp_path: Path) -> None:
    """A missing source or model folder is named at once: `twin train`, `twin evaluate` and `twin synth` check their
    inputs before the models' modules load (torch alone took 2 s; a mistyped path cost 3 s)."""
    missing = str(tmp_path / "nothing")
    probe = ("import sys\nfrom twin.app.cli import app\n"
             f"for args in (['train', {missing!r}], ['evaluate', {missing!r}, '--models', {missing!r}], "
             f"['synth', 'train', {missing!r}], ['synth', '--model', {missing!r}, '--fault', 'x', '--out', "
             f"{missing + '.parquet'!r}]):\n"
             "    try:\n        app(args)\n    except SystemExit as e:\n        assert e.code == 2, (args, e.code)\n"
             "print('torch' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "COLUMNS": "200"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "False"
    assert r.stderr.count("nothing") >= 4 and "Traceback" not in r.stderr


def test_a_seed_beyond_64_bits_is_refused_by_every_command_that_takes_one(tmp_path: Path) -> None:
    """torch takes seeds below 2**63: `twin train --seed 99999999999999999999` ended in an OverflowError traceback."""
    big, folder = "99999999999999999999", str(tmp_path)
    assert_mistakes([], [([*args, "--seed", big], "less than or equal to 9223372036854775807")
                         for args in (["train", folder], ["synth", "train", folder],
                                      ["synth", "--model", folder, "--fault", "x", "--out", folder + "/w.parquet"],
                                      ["synth", "evaluate", folder, "--model", folder],
                                      ["run", "scenarios/bottling.yaml"], ["whatif", "scenarios/bottling.yaml"],
                                      ["compare", "scenarios/bottling.yaml"],
                                      ["tune", "scenarios/bottling.yaml", "--policy", "preventive"])])


@pytest.mark.slow  # trains twice in processes (5 s): the full suite's, not the inner loop's
def test_training_into_a_folder_of_earlier_models_needs_force(tmp_path: Path) -> None:
    """A second `twin train --out M` replaced the models in M (hours of training, perhaps) without a word, as did
    `twin synth train` its generators; `twin evaluate` already refused an earlier report's folder without --force."""
    args = ["train", "tests/data/fd001_slice.txt", "--unit-column", "0", "--time-column", "1", "--model",
            "regression", "--out", str(tmp_path / "m")]
    assert twin(*args).returncode == 0
    before = (tmp_path / "m" / "table" / "model.json").read_bytes()
    held = tmp_path / "g" / "filler"
    held.mkdir(parents=True)
    (held / "vae.json").write_text("{}")
    assert_mistakes([], [(args, f"--out {tmp_path / 'm'} already holds trained models (table); give another folder, "
                                "or add --force"),
                         (["synth", "train", str(tmp_path), "--kind", "vae", "--out", str(tmp_path / "g")],
                          "already holds trained models (filler)")])
    assert (tmp_path / "m" / "table" / "model.json").read_bytes() == before
    assert twin(*args, "--force", "--seed", "1").returncode == 0


def test_stream_options_on_a_run_that_does_not_stream_are_refused_before_it_starts(tmp_path: Path) -> None:
    """`twin run --no-stream --models M` simulated the whole run and forecast nothing, without a word (forecasts and
    alerts travel over MQTT); now it is refused before anything is written, like --broker and --no-ingest, which a
    --no-stream run ignored too. With --dashboard the models are for its machine pages, and a bad folder is named
    before the run."""
    out = tmp_path / "run"
    r = twin("run", "scenarios/cnc_cell.yaml", "--no-stream", "--models", str(tmp_path), "--out", str(out))
    assert r.returncode == 2 and "--models forecasts live" in r.stderr and "twin evaluate" in r.stderr, r.stderr
    r = twin("run", "scenarios/cnc_cell.yaml", "--no-stream", "--dashboard", "--models", str(tmp_path / "none"),
             "--out", str(out))
    assert r.returncode == 2 and "no models here" in r.stderr and "Traceback" not in r.stderr, r.stderr
    for args, message in ((("--broker", "mqtt://127.0.0.1:1"), "publishes nothing"),
                          (("--no-ingest",), "stores its readings itself")):
        r = twin("run", "scenarios/cnc_cell.yaml", "--no-stream", *args, "--out", str(out))
        assert r.returncode == 2 and message in r.stderr, (args, r.stderr)
    assert not out.exists()


def test_a_flat_out_run_left_to_another_ingest_says_what_its_broker_must_allow(tmp_path: Path) -> None:
    """Nothing holds a flat-out --no-ingest run to the worker that stores it: the run says what its broker needs."""
    r = twin("run", "scenarios/cnc_cell.yaml", "--no-ingest", "--broker", "mqtt://127.0.0.1:1", "--duration",
             "1 min", "--warmup", "0", "--out", str(tmp_path / "run"))
    err = " ".join(r.stderr.split())
    assert r.returncode == 3 and "cannot reach the MQTT broker" in err, r.stderr
    assert "nothing holds a flat-out run to the `twin ingest` that stores it" in err and "max_queued_messages 0" in err


def test_a_store_path_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    """A file or folder name with bytes that are not UTF-8 (a Latin-1 name on the command line) in a DuckDB store's
    path ended in DuckDB's `RuntimeError: std::bad_cast` traceback; a `twin run --out` folder of such a name (its
    store and the embedded broker's files go inside) in that one or in a UnicodeEncodeError writing mosquitto.conf."""
    bad = f"duckdb:///{tmp_path}/caf\udce9.duckdb"  # the byte 0xE9 on the command line
    for code, args in ((3, ("ingest", "--broker", "mqtt://127.0.0.1:1", "--store", bad)),
                       (2, ("run", "scenarios/cnc_cell.yaml", "--no-stream", "--duration", "1 min", "--warmup", "0",
                            "--out", tmp_path / "caf\udce9")),
                       (2, ("run", "scenarios/cnc_cell.yaml", "--duration", "1 min", "--warmup", "0", "--out",
                            tmp_path / "caf\udce9"))):
        r = twin(*map(str, args))
        assert r.returncode == code and "Traceback" not in r.stderr, r.stderr[-2000:]
        assert "is not UTF-8 text" in " ".join(r.stderr.split()), r.stderr
    assert not list(tmp_path.iterdir())


@pytest.mark.slow  # seconds of CLI runs: the full suite
def test_an_output_path_that_cannot_be_written_fails_before_the_work(tmp_path: Path) -> None:
    """twin compare, tune and train wrote their --out only at the end: an unwritable path cost the whole comparison
    or training and then a FileNotFoundError traceback. Every command now checks it first."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    cases = [("run", "scenarios/cnc_cell.yaml", "--no-stream", "--out", blocker / "run"),
             ("compare", "scenarios/bottling.yaml", "--policies", "run-to-failure,oracle", "--out", blocker / "c"),
             ("tune", "scenarios/bottling.yaml", "--policy", "preventive", "--values", "1 h,2 h", "--out", blocker),
             ("train", "tests/data/fd001_slice.txt", "--unit-column", "0", "--time-column", "1", "--model",
              "regression", "--out", blocker / "m"),
             ("evaluate", "tests/data/fd001_slice.txt", "--unit-column", "0", "--time-column", "1", "--models",
              tmp_path, "--out", blocker / "e"),
             ("schema", blocker / "s.json")]
    for args in cases:
        r = twin(*map(str, args))
        assert r.returncode == 2 and "a-file is a file, not a folder" in r.stderr.replace("\n", ""), (args, r.stderr)
        assert "Traceback" not in r.stderr


def test_dashboard_refuses_a_store_url_it_cannot_open_and_a_port_in_use(tmp_path: Path) -> None:
    """`twin dashboard --store sqlite:///x` started and printed its address; the store failed only on the pages.
    With --port taken by another program it printed that program's address as the dashboard's and exited 0. An
    --address that is not this host's failed only after a minute's wait for Streamlit's port."""
    import socket

    users = tmp_path / "users.yaml"
    users.write_text(f"cookie_key: {'k' * 40}\nusers:\n  olga: {{role: operator}}\n")
    for address, why in (("not-an-ip", ""), ("192.0.2.1", "Cannot assign requested")):  # the resolver words the 1st
        r = twin("dashboard", "--address", address, "--auth", str(users))
        err = " ".join(r.stderr.split())
        assert r.returncode == 2 and f"--address {address}: cannot listen there ({why}" in err, r.stderr

    r = twin("dashboard", "--store", "sqlite:///x")
    assert r.returncode == 2 and "unknown scheme 'sqlite'" in r.stderr and "Traceback" not in r.stderr, r.stderr
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        r = twin("dashboard", "--port", str(port))
    assert r.returncode == 3 and f"cannot listen on 127.0.0.1:{port}" in r.stderr and "dashboard:" not in r.stdout


def test_a_dashboard_server_that_fails_at_start_is_said_at_once(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """A Streamlit server that ended at start (here: a theme it cannot find; the CLI lets only light and dark
    through) was waited for a whole minute before its words were shown; now as soon as it has ended."""
    import time

    import typer

    from twin.app.cmd_dashboard import start_dashboard

    (tmp_path / "runs").mkdir()
    t = time.monotonic()
    with pytest.raises(typer.Exit) as ended:
        start_dashboard(tmp_path / "runs", theme="purple", cwd=tmp_path)
    took = time.monotonic() - t
    said = " ".join(capsys.readouterr().err.split())
    assert ended.value.exit_code == 3 and "the dashboard did not start on 127.0.0.1" in said, said
    assert "Theme file not found" in said and took < 30, (took, said)  # Streamlit's start: a few seconds


def test_dashboard_folders_that_are_files_are_refused(tmp_path: Path) -> None:
    """--runs or --reports naming a file started a dashboard that showed 'no runs yet', without a word."""
    (tmp_path / "a.txt").write_text("")
    assert_mistakes(["dashboard"], [(["--runs", str(tmp_path / "a.txt")], "--runs: " + str(tmp_path / "a.txt") +
                                     " is a file, not a folder"),
                                    (["--reports", str(tmp_path / "a.txt")], "--reports: " + str(tmp_path / "a.txt") +
                                     " is a file, not a folder")])


def test_schema_is_written_only_to_a_json_file(tmp_path: Path) -> None:
    """`twin schema line.yaml` (meaning `twin validate`) replaced the scenario file by the JSON Schema."""
    line = tmp_path / "line.yaml"
    line.write_text(Path("scenarios/cnc_cell.yaml").read_text())
    assert_mistakes(["schema"], [([str(line)], f"{line}: the JSON Schema goes to a .json file")])
    assert line.read_text() == Path("scenarios/cnc_cell.yaml").read_text()


def test_validate_reports_bad_file_with_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(Path("scenarios/bottling.yaml").read_text().replace("seed: 20261123", "seed: -4"))
    r = twin("validate", str(BUNDLED[0]), str(bad))
    assert r.returncode == 2
    assert "bad.yaml:" in r.stderr and "seed: must be greater than or equal to 0, got -4" in r.stderr
    assert "Traceback" not in r.stderr + r.stdout


def test_paths_names_and_values_print_verbatim_not_as_markup(tmp_path: Path) -> None:
    """A folder 'plant[x]' printed as 'plant', a value ':b:' as an emoji: the consoles print text as it is."""
    folder = tmp_path / "plant[x]"
    folder.mkdir()
    good, bad = folder / "ok[2].yaml", folder / "s[1].yaml"
    text = Path("scenarios/bottling.yaml").read_text()
    good.write_text(text)
    bad.write_text(text.replace("duration: 8 h", 'duration: "[bold]8 hours :b: [/]"'))
    r = twin("validate", str(good), str(bad))
    assert r.returncode == 2 and f"ok {good}:" in " ".join(r.stdout.split()), r.stdout
    assert "'[bold]8 hours :b: [/]'" in r.stderr, r.stderr
    r = twin("schema", str(folder / "schema[1].json"))
    assert r.returncode == 0 and f"wrote {folder / 'schema[1].json'}" in r.stdout, r.stdout


@pytest.mark.slow
@pytest.mark.parametrize("path", BUNDLED, ids=lambda p: p.stem)
def test_run_bundled_scenario_end_to_end(path: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    r = twin("run", str(path), "--duration", "1 h", "--warmup", "10 min", "--replications", "2", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "line KPIs over 2 replications" in " ".join(r.stdout.split()) and "throughput [parts/h]" in r.stdout
    assert "where the planned time went: the OEE's losses at" in " ".join(r.stdout.split()), r.stdout
    assert "OEE (fully productive)" in r.stdout and "oee loss" not in r.stdout  # its own table, not the line's
    assert ("to rework" in r.stdout) == (path.stem == "body_shop_merge")  # the stations' column where they send any
    assert not re.search(r"\de[+-]\d", r.stdout), r.stdout  # '3055 ± 2.6e+02' once
    for f in ("readings.parquet", "sensors.parquet", "kpis.parquet", "summary.parquet", "summary.csv", "run.json",
              "truth/states.parquet", "truth/events.parquet", "truth/parts.parquet", "truth/health.parquet"):
        assert (out / f).is_file(), f
    readings = pd.read_parquet(out / "readings.parquet")
    sensors = pd.read_parquet(out / "sensors.parquet")
    assert set(readings.columns) == {"replication", "t", "timestamp", "machine", "sensor", "value"}
    assert set(readings.replication) == {0, 1}
    per_series = readings[readings.replication == 0].groupby(["machine", "sensor"], observed=True).size()
    expected = (3600 / sensors.set_index(["machine", "sensor"]).period).loc[per_series.index]
    assert len(per_series) == len(sensors)
    assert (per_series.to_numpy() <= expected.to_numpy()).all()
    assert (per_series.to_numpy() > 0.8 * expected.to_numpy()).all()
    summary = pd.read_csv(out / "summary.csv")
    line = summary[summary.scope == "line"].set_index("kpi")
    assert line.loc["throughput [parts/h]", "n"] == 2 and line.loc["throughput [parts/h]", "mean"] > 0
    assert 0 < line.loc["oee", "mean"] <= 1
    states = pd.read_parquet(out / "truth/states.parquet")
    assert set(sensors.machine) <= set(states.machine)
    assert {"state", "wear", "fault_mode"}.isdisjoint(readings.columns)  # ground truth kept apart


@pytest.mark.slow
def test_same_seed_gives_identical_files_and_seed_option_changes_them(tmp_path: Path) -> None:
    args = ("run", "scenarios/body_shop.yaml", "--duration", "20 min", "--warmup", "0", "--replications", "1")
    a = twin(*args, "--out", str(tmp_path / "a"))
    b = twin(*args, "--out", str(tmp_path / "b"))
    c = twin(*args, "--seed", "99", "--out", str(tmp_path / "c"))
    assert a.returncode == b.returncode == c.returncode == 0
    ra, rb, rc = (pd.read_parquet(tmp_path / x / "readings.parquet") for x in "abc")
    pd.testing.assert_frame_equal(ra, rb)
    assert not ra.value.equals(rc.value)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "a/kpis.parquet"),
                                  pd.read_parquet(tmp_path / "b/kpis.parquet"))
    # byte for byte, not only equal frames: bottling's readings once came out in varying bytes (their dictionaries)
    for x in "de":
        assert twin("run", "scenarios/bottling.yaml", "--duration", "1 h", "--replications", "2", "--no-stream",
                    "--out", str(tmp_path / x)).returncode == 0
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.parquet"))
    assert Path("readings.parquet") in files and Path("truth/states.parquet") in files
    for x, y in (("a", "b"), ("d", "e")):
        for f in files:
            assert (tmp_path / x / f).read_bytes() == (tmp_path / y / f).read_bytes(), (x, f)


@pytest.mark.parametrize(("args", "expected"), [
    (("--duration", "banana"), "--duration: not a duration: 'banana'"),
    (("--duration", "-5 min"), "--duration: a time cannot be negative"),
    (("--warmup", "9 h"), "warmup (32400 s) must be shorter than duration"),
    (("--duration", "8"), "--duration 8: give its unit, e.g. '8 h', '8 min' or '8 s'"),  # ran 8 seconds
    (("--duration", "8 h", "--warmup", "1.5"), "--warmup 1.5: give its unit"),
])
def test_run_rejects_bad_options(tmp_path: Path, args: tuple[str, ...], expected: str) -> None:
    r = twin("run", "scenarios/bottling.yaml", *args, "--out", str(tmp_path / "x"))
    assert r.returncode == 2
    assert expected in " ".join(r.stderr.split())
    assert "Traceback" not in r.stderr


def test_run_never_overwrites_an_earlier_run(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "readings.parquet").write_text("precious")
    r = twin("run", "scenarios/bottling.yaml", "--duration", "5 min", "--warmup", "0", "--out", str(out))
    assert r.returncode == 2 and "not empty" in r.stderr
    assert (out / "readings.parquet").read_text() == "precious"


def test_run_missing_file() -> None:
    r = twin("run", "scenarios/nope.yaml")
    assert r.returncode == 2 and "cannot read the scenario file" in r.stderr and "Traceback" not in r.stderr


def test_run_without_streaming_writes_the_store_directly(tmp_path: Path) -> None:
    """--no-stream: no broker at all; every reading goes straight into the store, exactly once."""
    import pandas as pd

    from sensors.store import open_store
    from sensors.store.ledger import Ledger

    out = tmp_path / "plain"
    r = twin("run", "scenarios/cnc_cell.yaml", "--duration", "2 h", "--warmup", "0", "--replications", "1",
             "--no-stream", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "MQTT" not in r.stdout and "streaming" not in r.stderr
    constraint = next(x for x in r.stdout.splitlines() if "constraint station" in x)
    assert constraint.split("│")[2].strip() == "mill", constraint  # its name; it printed '1 ± 0', the station's index
    meta = json.loads((out / "run.json").read_text())
    store = open_store(meta["store"], read_only=True)
    generated = pd.read_parquet(out / "readings.parquet")
    assert store.count(meta["run_id"]) == len(generated) > 0
    assert len(store.states(meta["run_id"])) > 0  # type: ignore[attr-defined]
    store.close()
    ledger = Ledger()  # the tests' home (conftest), not the user's
    assert out.resolve() in [p.resolve() for p in ledger.run_folders()]
    ledger.close()


@pytest.mark.parametrize("broker", ["amqtt", pytest.param("mosquitto", marks=pytest.mark.slow)])  # check: one
def test_a_run_from_a_folder_of_the_users_own_scripts_uses_ours(tmp_path: Path, broker: str) -> None:
    """A plant engineer's folder holds their own twin.py, sensors.py (...): the processes `twin run` starts with
    `python -m` (the run's ingest, the embedded amqtt broker) put that folder first on their path and imported those
    in place of ours, and the run failed. The installed `twin` is run there, streaming through each embedded broker,
    and on two local workers."""
    from sensors.store import open_store

    for name in ("twin.py", "sensors.py", "predictors.py", "dashboard.py", "amqtt.py", "duckdb.py"):
        (tmp_path / name).write_text(f"raise ImportError('the user\\'s own {name} was imported')\n")
    env = {"COLUMNS": "120", "PATH": "/usr/bin:/bin", "LINETWIN_HOME": os.environ["LINETWIN_HOME"],
           "LINETWIN_EMBEDDED_BROKER": broker}
    installed = str(Path(sys.executable).parent / "twin")
    runs = [[installed, "run", str(ROOT / "scenarios" / "cnc_cell.yaml"), "--duration", "20 min", "--warmup", "0",
             "--replications", "1", "--out", str(tmp_path / "streamed")]]
    if broker == "mosquitto":
        runs.append([installed, "run", str(ROOT / "scenarios" / "cnc_cell.yaml"), "--duration", "20 min",
                     "--warmup", "0", "--replications", "2", "--jobs", "2", "--no-stream", "--out",
                     str(tmp_path / "workers")])
    for cmd in runs:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
        assert r.returncode == 0 and "was imported" not in r.stderr, r.stderr[-3000:]
    meta = json.loads((tmp_path / "streamed" / "run.json").read_text())
    store = open_store(meta["store"], read_only=True)
    try:
        assert store.count(meta["run_id"]) == len(pd.read_parquet(tmp_path / "streamed" / "readings.parquet")) > 0
    finally:
        store.close()


def test_a_run_into_a_log_file_shows_progress_lines_and_whole_tables(tmp_path: Path) -> None:
    """Output to a file or pipe (a log, CI): the live bar printed once, at the end, and every table was cut to 80
    columns, so that a column read 'avail…' and a figure wider than its cell ended in '…'."""
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    r = subprocess.run([sys.executable, "-m", "twin.app.cli", "run", "scenarios/cnc_cell.yaml", "--duration", "2 h",
                        "--warmup", "0", "--replications", "2", "--no-stream", "--out", str(tmp_path / "r")],
                       capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr
    lines = [x for x in r.stderr.splitlines() if "% replication" in x]
    assert lines and lines[-1].endswith(": 100% replication 2/2, 2.0 h simulated"), r.stderr
    assert "━" not in r.stderr and "…" not in r.stdout, r.stdout
    assert "availability" in r.stdout and "MTTR [min]" in r.stdout


def test_a_narrow_terminal_wraps_a_table_value_rather_than_cutting_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """On an 80-column terminal `twin evaluate`'s scores table showed a NASA score of 1.085e+05 as '1.08…'."""
    import io

    from rich.console import Console
    from rich.table import Table

    from twin.app import options

    screen = io.StringIO()
    monkeypatch.setattr(options, "out_console", Console(file=screen, width=40, markup=False))
    table = Table()
    for name in ("model", "RMSE", "MAE", "NASA score", "F1"):
        table.add_column(name)
    table.add_row("baseline", "20.96 h", "15.57 h", "1.085e+05", "0.000")
    options.print_table(table)
    shown = screen.getvalue()
    rows = [line.split("│")[1:-1] for line in shown.splitlines() if line.startswith("│")]  # the one row's lines
    column = ["".join(cells[i].strip() for cells in rows) for i in range(5)]
    assert "…" not in shown and column == ["baseline", "20.96h", "15.57h", "1.085e+05", "0.000"], shown


@pytest.mark.slow
@pytest.mark.parametrize(("sig", "code", "args"), [(signal.SIGTERM, 143, ("--no-stream", "--jobs", "1")),
                                                   (signal.SIGINT, 130, ())])
def test_a_run_stopped_by_a_signal_ends_cleanly(sig: int, code: int, args: tuple[str, ...], tmp_path: Path) -> None:
    """SIGTERM (systemd, docker, kill) or Ctrl-C mid-run: exit at once but cleanly; readings.parquet valid up to the
    stop, run.json `interrupted`, no child process (ingest, embedded broker) or broker temp folder left behind."""
    import os

    temp = tmp_path / "tmp"  # the run's own temp folder: other tests' brokers come and go in the shared one
    temp.mkdir()
    out = tmp_path / "run"
    log = tmp_path / "stderr.txt"
    command = [sys.executable, "-m", "twin.app.cli", "run", "scenarios/body_shop.yaml", "--duration", "30 d",
               "--replications", "1", "--out", str(out), *args]
    proc = subprocess.Popen(_as_a_foreground_job(command), stdout=subprocess.DEVNULL, stderr=log.open("w"),
                            env={**os.environ, "COLUMNS": "120", "TMPDIR": str(temp)}, start_new_session=True)
    try:
        _stop_mid_run(proc, sig, code, out, log)
    finally:
        with contextlib.suppress(ProcessLookupError):  # whatever it left, if the test failed
            os.killpg(proc.pid, signal.SIGKILL)
    assert not list(temp.iterdir()), list(temp.iterdir())  # no broker temp folder (nor anything else) left


def _as_a_foreground_job(command: list[str]) -> list[str]:
    """`command` with SIGINT handled as a terminal's foreground job has it, whatever the test process does with it
    (an ignored signal is inherited across exec; a shell's background jobs ignore it). The same process id: exec."""
    return [sys.executable, "-c", "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
            "os.execv(sys.argv[1], sys.argv[1:])", *command]


def _stop_mid_run(proc: subprocess.Popen[bytes], sig: int, code: int, out: Path, log: Path) -> None:
    import time

    import pyarrow.parquet as pq

    partial = out / ".readings.parquet.writing"
    deadline = time.monotonic() + 120
    while not partial.exists() or partial.stat().st_size < 10_000:
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
        time.sleep(0.2)
    time.sleep(1.0)
    children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
    status = Path(f"/proc/{proc.pid}/status").read_text()
    proc.send_signal(sig)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        masks = [line for line in status.splitlines() if line.startswith(("SigBlk", "SigIgn", "SigCgt"))]
        pytest.fail(f"still running 60 s after signal {sig} ({masks}):\n{log.read_text()[-2000:]}")
    err = log.read_text()
    assert proc.returncode == code, err[-3000:]
    assert "Traceback" not in err
    meta = json.loads((out / "run.json").read_text())
    assert meta["status"] == "interrupted" and "stopped by" in meta["reason"]
    readings = pq.read_table(out / "readings.parquet")  # a valid file, up to the stop
    assert readings.num_rows > 0
    assert not list(out.glob(".*.writing"))
    for pid in children:  # the ingest and the embedded broker ended with the run
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
