"""Synthetic anomaly data: generators trained on the bottling runs through the CLI, their windows' shape,
determinism and quality (they must beat noise around the mean), conditioning, the VAE's anomaly score,
the report, the rare-fault experiment, and synthetic anomalies replayed into a live run over mosquitto
until the forecaster alerts on that machine and no other."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from streamlit.testing.v1 import AppTest

from predictors import genmetrics as gm
from predictors.data import from_twin_run
from predictors.synth import HEALTHY, ConditionalVAE, ConditionalWGAN, load_generator, load_generators, twin_windows
from predictors.synth_eval import anomaly_auroc, augmentation, make_rare, trivial
from tests.conftest import Mosquitto, assert_mistakes, shared_once, twin_cmd
from tests.test_forecasting import AlertListener

pytestmark = pytest.mark.slow  # end to end: trains generators on simulated runs, replays them live

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def gen(work: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A VAE and a GAN per bottling machine type, trained briefly through the CLI on the training runs, once per
    session for every worker (each worker trained its own into one folder, at the same time). The tests check the
    VAE's quality and only the GAN's mechanics (its quality is bench/synth.py's), so the GAN takes 20 steps."""
    def make(out: Path) -> None:
        r = subprocess.run(twin_cmd("synth", "train", work / "train", "--epochs", 10, "--updates", 0, "--steps", 20,
                                    "--stride", 3, "--out", out), capture_output=True, text=True, timeout=600, cwd=ROOT)
        assert r.returncode == 0, r.stderr[-3000:]
        assert "filler" in r.stdout and "conveyor_machine" in r.stdout

    return shared_once(tmp_path_factory, "generators", make)


@pytest.fixture(scope="session")
def held(work: Path) -> dict[str, object]:
    return twin_windows([work / "heldout"], 30, 5)  # type: ignore[return-value]


def test_windows_are_labelled_from_the_ground_truth(work: Path) -> None:
    w = twin_windows([work / "heldout"], 30, 10)["filler"]
    assert w.x.shape[1:] == (30, 5) and not np.isnan(w.x).any()
    assert set(w.mode) <= {HEALTHY, "valve_clogging", "overheating"} and len(set(w.mode)) == 3
    assert (w.severity[w.mode == HEALTHY] < 0.2).all() and (w.severity[w.mode != HEALTHY] >= 0.2).all()
    # a worn filler shows it: windows labelled overheating near failure run hotter than healthy ones
    temp = w.features.index("product_temp")
    hot = w.x[(w.mode == "overheating") & (w.severity > 0.8), -1, temp]
    assert hot.mean() > w.x[w.mode == HEALTHY, -1, temp].mean() + 2.0


def test_windows_of_a_stopped_machine_are_labelled_healthy(work: Path) -> None:
    """No wear shows on a machine that is down or in maintenance for a whole window: such windows are healthy."""
    states = pd.read_parquet(work / "heldout" / "truth" / "states.parquet")
    stopped = states[states.state.astype(str).isin(["down", "maintenance", "off_shift"])]
    seen = 0
    for w in twin_windows([work / "heldout"], 30, 1).values():
        machine = np.array([u.split("/")[-1] for u in w.unit])
        for m, g in stopped.groupby("machine"):
            # merged stopped stretches of this machine; a window [end - 29 min, end + 1 min) inside one is stopped
            for a, b in zip(g.start.to_numpy(), g.end.to_numpy()):
                inside = (machine == m) & (w.end - 29 * 60 >= a) & (w.end + 60 <= b)
                seen += inside.sum()
                assert (w.mode[inside] == HEALTHY).all() and (w.severity[inside] == 0).all()
        assert (w.mode != HEALTHY).any()  # running windows keep their fault modes
    assert seen > 0, "the held-out run has no machine stopped for half an hour: the test shows nothing"


def test_generated_windows_shape_determinism_and_save_load(gen: Path, tmp_path: Path) -> None:
    gens = load_generators(gen)
    assert set(gens) == {"conveyor_machine", "filler"} and set(gens["filler"]) == {"vae", "gan"}
    for kind, g in gens["filler"].items():
        a = g.sample("valve_clogging", 0.8, 50, seed=3)
        assert a.x.shape == (50, 30, 5) and a.synthetic and np.isfinite(a.x).all()
        assert (a.mode == "valve_clogging").all() and np.allclose(a.severity, 0.8)
        np.testing.assert_array_equal(a.x, g.sample("valve_clogging", 0.8, 50, seed=3).x)
        assert not np.allclose(a.x, g.sample("valve_clogging", 0.8, 50, seed=4).x)
        g.save(tmp_path, kind)
        np.testing.assert_array_equal(a.x, load_generator(tmp_path / f"{kind}.json").sample(
            "valve_clogging", 0.8, 50, seed=3).x)
        meta = json.loads((tmp_path / f"{kind}.json").read_text())
        assert meta["kind"] == kind and meta["meta"]["data"]["windows"] > 1000 and meta["window"] == 30
    with pytest.raises(ValueError, match="choose one of healthy, valve_clogging, overheating"):
        gens["filler"]["vae"].sample("bearing_wear", 0.5, 3)


def test_training_is_reproducible_under_a_seed(work: Path) -> None:
    w = twin_windows([work / "heldout"], 30, 10)["filler"]
    for cls, params in ((ConditionalVAE, {"epochs": 2, "updates": 0}), (ConditionalWGAN, {"steps": 5})):
        a = cls(seed=1, **params).fit(w).sample("overheating", 0.9, 20, seed=0).x  # type: ignore[arg-type]
        b = cls(seed=1, **params).fit(w).sample("overheating", 0.9, 20, seed=0).x  # type: ignore[arg-type]
        np.testing.assert_array_equal(a, b)


def test_the_vae_beats_noise_around_the_mean_and_honours_its_conditions(gen: Path, work: Path, held: dict) -> None:
    vae = load_generators(gen)["conveyor_machine"]["vae"]
    real = held["conveyor_machine"]
    synth = vae.sample(real.mode, real.severity, len(real), seed=1)
    ours = gm.discriminative_score(real.x, synth.x, 600)
    noise = gm.discriminative_score(real.x, trivial(real), 600)
    assert ours < noise - 0.15, (ours, noise)
    assert gm.marginal_distance(real.x, synth.x) < gm.marginal_distance(real.x, trivial(real))
    # conditioning: a classifier trained on real windows recognises the requested fault mode
    train = twin_windows([work / "train"], 30, 5)["conveyor_machine"]
    m = gm.classifiable(train.mode, train.severity)
    clf = gm.ModeClassifier.fit(train.x[m], train.mode[m])
    s = gm.classifiable(synth.mode, synth.severity)
    assert clf.accuracy(synth.x[s], synth.mode[s]) >= 0.8
    # the reconstruction error is an anomaly score: worn windows rank above healthy ones
    assert anomaly_auroc(vae, real) > 0.9


def test_twin_synth_writes_readings_marked_synthetic(gen: Path, tmp_path: Path) -> None:
    out = tmp_path / "s.parquet"
    r = subprocess.run(twin_cmd("synth", "--model", gen, "--machine-type", "conveyor_machine", "--fault",
                                "bearing_wear", "--severity", 0.9, "--n", 4, "--seed", 5, "--out", out,
                                "--machine", "case-packer"), capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    df = pd.read_parquet(out)
    assert {"run", "replication", "machine", "sensor", "ts", "value", "synthetic"} <= set(df.columns)
    assert df.synthetic.all() and (df.machine == "case-packer").all() and (df.fault_mode == "bearing_wear").all()
    assert len(df) == 4 * 30 * 5 and df.window.nunique() == 4 and df.ts.nunique() == 4 * 30
    vib = df[df.sensor == "vibration_rms"].value
    assert 0 <= vib.median() < 15  # mm/s: a machine's vibration, not noise around zero
    # more windows than one batch: written batch by batch (a million as one frame took 40 GB), the same readings
    # as one frame of every window, times running on across the batches; an existing file is replaced only with
    # --force (it was replaced without a word)
    again = ("synth", "--model", gen, "--machine-type", "conveyor_machine", "--fault", "bearing_wear", "--n", 4100,
             "--seed", 5, "--out", out, "--start", "2026-01-01 06:00")
    before = out.read_bytes()
    r = subprocess.run(twin_cmd(*again), capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 2 and "the file exists" in r.stderr and "--force" in r.stderr and out.read_bytes() == before
    r = subprocess.run(twin_cmd(*again, "--force"), capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 0 and "615,000 readings" in r.stdout, r.stderr
    whole = load_generators(gen)["conveyor_machine"]["vae"].sample("bearing_wear", 0.8, 4100, seed=5).to_frame(
        pd.Timestamp("2026-01-01 06:00"), run="synthetic-vae-5", machine="conveyor_machine")
    pd.testing.assert_frame_equal(pd.read_parquet(out), whole)
    assert not list(tmp_path.glob("*.part"))


@pytest.mark.parametrize(("args", "message"), [
    (["--fault", "nope"], "fault mode 'nope' is not one this generator knows"),
    (["--fault", "bearing_wear", "--machine-type", "press"], "--machine-type 'press': no generator for it"),
    (["--fault", "bearing_wear", "--kind", "flow"], "--kind 'flow'"),
    (["--fault", "bearing_wear", "--out-missing"], "No such option"),
    (["--fault", "bearing_wear", "--machine", "a/b"], "--machine 'a/b': a machine name is letters, digits"),
    (["--fault", "bearing_wear", "--start", "1600-01-01"], "--start '1600-01-01': give a time between 1970 and 2200"),
])
def test_twin_synth_mistakes_fail_clearly(gen: Path, tmp_path: Path, args: list[str], message: str) -> None:
    cmd = ["synth", "--model", gen, "--machine-type", "conveyor_machine", "--out", tmp_path / "x.parquet"]
    if "--machine-type" in args:
        cmd = ["synth", "--model", gen, "--out", tmp_path / "x.parquet"]
    r = subprocess.run(twin_cmd(*cmd, *args), capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 2 and message in " ".join(r.stderr.split()), r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "x.parquet").exists()


def test_a_start_with_a_utc_offset_is_written_as_the_stores_utc(gen: Path, tmp_path: Path) -> None:
    """--start '2026-01-01T06:00+01:00' wrote a column with a +01:00 zone, unlike the store's (UTC) readings."""
    out = tmp_path / "w.parquet"
    r = subprocess.run(twin_cmd("synth", "--model", gen, "--machine-type", "conveyor_machine", "--fault", "healthy",
                                "--n", 1, "--start", "2026-01-01T06:00+01:00", "--out", out),
                       capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    ts = pd.read_parquet(out).ts
    assert ts.dt.tz is None and ts.min() == pd.Timestamp("2026-01-01 05:00")


def test_twin_synth_evaluate_writes_the_report(gen: Path, work: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    r = subprocess.run(twin_cmd("synth", "evaluate", work / "heldout", "--model", gen, "--iterations", 20,
                                "--stride", 20, "--train", work / "train", "--out", tmp_path / "rep"),
                       capture_output=True, text=True,
                       timeout=600, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    text = (tmp_path / "rep" / "report.md").read_text()
    for part in ("## filler", "## conveyor_machine", "discriminative", "conditional accuracy", "anomaly AUROC",
                 "trivial (noise around the mean)", "real (other units)", "## Alerting on the anomaly score"):
        assert part in text
    for group in ("filler", "conveyor_machine"):
        for png in (f"embedding-{group}.png", f"windows-{group}.png"):
            assert (tmp_path / "rep" / png).stat().st_size > 10_000
    # the dashboard's Models page shows the scores and real vs synthetic windows
    monkeypatch.setenv("LINETWIN_REPORTS", str(tmp_path))
    at = AppTest.from_file(str(ROOT / "dashboard" / "views" / "models.py"), default_timeout=60).run()
    assert not at.exception
    assert [s.value for s in at.subheader] == ["conveyor_machine: synthetic vs real windows",
                                               "filler: synthetic vs real windows",
                                               "alerts on the VAE's anomaly score, against real failures"]
    table = at.dataframe[0].value
    assert list(table.generator[:2]) == ["GAN (WGAN-GP)", "VAE"] and "discriminative" in table
    # the TimeGAN protocol (against the training windows) beside the held-out score, with its real floor
    vs_training = table.set_index("generator")["discriminative vs training"]
    assert vs_training.drop("trivial (noise around the mean)").astype(float).between(0, 0.5).all()
    assert len(at.get("image")) == 4


def test_twin_synth_evaluate_mistakes_are_named_before_the_scoring(gen: Path, work: Path, tmp_path: Path) -> None:
    """`--rare` with a mode the runs do not have ended in a DataError traceback after minutes of scoring; `--keep`
    without `--rare` did nothing, without a word; a second evaluation wrote over the first one's report."""
    base = ["synth", "evaluate", str(work / "heldout"), "--model", str(gen), "--out", str(tmp_path / "rep")]
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    (earlier / "report.md").write_text("an earlier report")
    assert_mistakes(base, [(["--rare", "nosuch", "--train", str(work / "train")],
                            "--rare 'nosuch': no machine type of the --train runs has that wear-out mode"),
                           (["--keep", "3"], "--keep belongs to --rare MODE"),
                           (["--out", str(earlier)], f"--out {earlier}: holds an earlier report")])
    assert not (tmp_path / "rep").exists() and (earlier / "report.md").read_text() == "an earlier report"


def test_a_rare_fault_mode_keeps_one_failure(work: Path) -> None:
    ds = from_twin_run(work / "train")["filler"]
    rare, total = make_rare(ds, "valve_clogging", keep=1)
    assert total == (ds.failures.fault_mode == "valve_clogging").sum() >= 2
    assert (rare.failures.fault_mode == "valve_clogging").sum() == 1
    assert (rare.failures.fault_mode == "overheating").sum() == (ds.failures.fault_mode == "overheating").sum()
    j = ds.modes.index("valve_clogging")
    near = rare.ttf[:, j] <= 7200
    assert 0 < near.sum() <= 121  # one life's last two hours of minutes remain
    # a unit cut where rows were taken out continues as its own unit: no window spans the gap
    steps = rare.frame.groupby("unit")["time"].diff().dropna()
    assert (steps == 60).all()


def test_the_augmentation_experiment_runs_end_to_end(work: Path) -> None:
    aug = augmentation([work / "train"], [work / "heldout"], "valve_clogging", keep=1, n_synthetic=300,
                       lstm={"epochs": 3}, generator={"epochs": 2, "updates": 0})
    assert list(aug.scores.model) == ["all failures", f"rare (1 of {aug.failures})", "rare + 300 synthetic (vae)"]
    assert aug.group == "filler" and (aug.scores.failures > 0).all()
    assert np.isfinite(aug.lift)


def _healthy_line_and_wear(gen: Path, tmp_path: Path, seed: int) -> tuple[Path, Path]:
    """The bottling line with every machine new (healthy for hours), and 4 half-hour windows of synthetic
    bearing wear at severity 1.0 for a conveyor machine."""
    doc = yaml.safe_load((ROOT / "scenarios" / "bottling.yaml").read_text())
    for mt in doc["machine_types"].values():
        mt["start_age"] = "new"
    healthy = tmp_path / "healthy.yaml"
    healthy.write_text(yaml.safe_dump(doc))
    synth = tmp_path / "wear.parquet"
    r = subprocess.run(twin_cmd("synth", "--model", gen, "--machine-type", "conveyor_machine", "--fault",
                                "bearing_wear", "--severity", 1.0, "--n", 4, "--seed", seed, "--out", synth),
                       capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    return healthy, synth


def test_synthetic_anomalies_replayed_into_a_live_run_are_alerted(work: Path, gen: Path, mosquitto: Mosquitto,
                                                                    tmp_path: Path) -> None:
    """A healthy line; two hours of synthetic bearing wear replayed into the case packer over MQTT: the live
    forecaster alerts on the case packer, and on no other machine."""
    healthy, synth = _healthy_line_and_wear(gen, tmp_path, seed=0)
    listener = AlertListener(mosquitto)
    r = subprocess.run(twin_cmd("run", healthy, "--policy", "run-to-failure", "--seed", 15, "--duration", "2.5 h",
                                "--warmup", 0, "--replications", 1, "--broker", mosquitto.url, "--models",
                                work / "lstm", "--inject", synth, "--into", "case-packer", "--at", "20 min",
                                "--out", tmp_path / "run"), capture_output=True, text=True, timeout=300, cwd=ROOT)
    listener.close()
    assert r.returncode == 0, r.stderr[-3000:]
    meta = json.loads((tmp_path / "run" / "run.json").read_text())
    assert meta["injections"][0] | {"source": ""} == {
        "source": "", "machine": "case-packer", "start": 1200.0, "end": 1200.0 + 4 * 1800.0,
        "sensors": sorted(meta["injections"][0]["sensors"]), "fault_mode": "bearing_wear", "severity": 1.0,
        "synthetic": True}
    raised = {a["machine"] for _, a in listener.got if a["state"] == "raised"}
    assert raised == {"case-packer"}, [a for _, a in listener.got]
    # the store holds the synthetic values: the case packer's per-minute means are the file's minutes
    ds = from_twin_run(tmp_path / "run")["conveyor_machine"]
    packer = ds.frame[(ds.frame.machine == "case-packer") & ds.frame.time.between(1200, 1200 + 3 * 60)]
    values = pd.read_parquet(synth)
    first = values[values.window == 0].pivot_table(index="ts", columns="sensor", values="value").iloc[:4]
    got = packer.set_index("time")[list(first.columns)].iloc[:4].to_numpy()
    np.testing.assert_allclose(got[~np.isnan(got)], first.to_numpy()[~np.isnan(got)], rtol=1e-6)


def test_the_vae_anomaly_score_alone_alerts_on_a_replayed_anomaly(work: Path, gen: Path, mosquitto: Mosquitto,
                                                                   tmp_path: Path) -> None:
    """Forecasting with the naive baseline (which never alerts) plus the VAE's anomaly score: two hours of
    synthetic bearing wear in the case packer of a healthy line raise an 'anomaly' alert on it alone, over MQTT."""
    models = tmp_path / "baseline"
    for f in (work / "lstm").glob("*/baseline.*"):
        (models / f.parent.name).mkdir(parents=True, exist_ok=True)
        (models / f.parent.name / f"model{f.suffix}").write_bytes(f.read_bytes())
    healthy, synth = _healthy_line_and_wear(gen, tmp_path, seed=3)
    listener = AlertListener(mosquitto)
    r = subprocess.run(twin_cmd("run", healthy, "--policy", "run-to-failure", "--seed", 15, "--duration", "2.5 h",
                                "--warmup", 0, "--replications", 1, "--broker", mosquitto.url, "--models", models,
                                "--anomaly", gen,
                                "--inject", synth, "--into", "case-packer", "--at", "20 min", "--out",
                                tmp_path / "run"), capture_output=True, text=True, timeout=300, cwd=ROOT)
    listener.close()
    assert r.returncode == 0, r.stderr[-3000:]
    assert "anomaly scores from" in r.stderr
    raised = [a for _, a in listener.got if a["state"] == "raised"]
    assert {a["machine"] for a in raised} == {"case-packer"}, raised
    alert = raised[0]
    assert alert["fault_mode"] == "anomaly" and alert["probabilities"]["anomaly"] >= 0.5
    start = pd.Timestamp(json.loads((tmp_path / "run" / "run.json").read_text())["scenario"]["start"], tz="UTC")
    assert start.value // 1_000_000 + 1200_000 < alert["ts"] <= start.value // 1_000_000 + (1200 + 4 * 1800) * 1000


def test_anomaly_detectors_that_do_not_fit_the_models_fail_clearly(work: Path, gen: Path, tmp_path: Path) -> None:
    old = tmp_path / "old" / "filler"
    old.mkdir(parents=True)
    doc = json.loads((gen / "filler" / "vae.json").read_text())
    doc["meta"].pop("anomaly")  # a VAE saved before thresholds were calibrated
    (old / "vae.json").write_text(json.dumps(doc))
    (old / "vae.npz").write_bytes((gen / "filler" / "vae.npz").read_bytes())
    cases = [(gen, ["--no-stream"], "--anomaly: give --models too"),
             (tmp_path / "old", ["--models", work / "lstm"], "retrain it with `twin synth train`"),
             (work / "lstm", ["--models", work / "lstm"], "no generators here")]
    for folder, args, message in cases:
        r = subprocess.run(twin_cmd("run", "scenarios/bottling.yaml", "--duration", "1 h", "--anomaly", folder, *args,
                                    "--out", tmp_path / "r"), capture_output=True, text=True, timeout=120, cwd=ROOT)
        assert r.returncode == 2 and message in " ".join(r.stderr.split()), (args, r.stderr)
        assert "Traceback" not in r.stderr and not (tmp_path / "r").exists()


def test_replay_mistakes_fail_clearly(gen: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.parquet"
    pd.DataFrame({"a": [1]}).to_parquet(bad)
    cases = [(["--inject", bad, "--into", "case-packer"], "no column(s)"),
             (["--inject", tmp_path / "none.parquet", "--into", "case-packer"], "cannot read synthetic readings"),
             (["--into", "case-packer"], "--into and --at belong to --inject"),
             (["--inject", bad], "name the machine whose readings it replaces")]
    good = tmp_path / "g.parquet"
    subprocess.run(twin_cmd("synth", "--model", gen, "--machine-type", "filler", "--fault", "overheating", "--n", 1,
                            "--out", good), check=True, capture_output=True, cwd=ROOT, timeout=120)
    cases += [(["--inject", good, "--into", "press-9"], "--into 'press-9': no such machine"),
              (["--inject", good, "--into", "case-packer"], "are not on case-packer")]
    for args, message in cases:
        r = subprocess.run(twin_cmd("run", "scenarios/bottling.yaml", "--duration", "1 h", "--no-stream", *args,
                                    "--out", tmp_path / "r"), capture_output=True, text=True, timeout=120, cwd=ROOT)
        assert r.returncode == 2 and message in " ".join(r.stderr.split()), (args, r.stderr)
        assert "Traceback" not in r.stderr and not (tmp_path / "r").exists()
