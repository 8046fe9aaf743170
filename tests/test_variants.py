"""`--variant FILE`: another version of the line's scenario file (what an improvement project changes) as an
alternative of `twin compare` and `twin whatif`, run with the same random numbers from the same start or state."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import assert_mistakes
from twin.app.alternatives import alternatives, differences
from twin.app.compare import compare_designs, write_report
from twin.scenario import LineNow, MachineNow, load_scenario

PACKAGING = Path("scenarios/packaging.yaml")


def _variant(tmp_path: Path, change: Any, name: str = "variant.yaml") -> Path:
    data = yaml.safe_load(PACKAGING.read_text())
    change(data)
    (tmp_path / name).write_text(yaml.safe_dump(data, sort_keys=False))
    return tmp_path / name


def _shorter_changeovers(data: dict[str, Any]) -> None:
    """SMED on the filler: the juice changeovers' 60-80-120 min triangle cut to 25-35-50 min."""
    filler = next(s for s in data["stations"] if s["name"] == "filler")
    for to in filler["setup_matrix"]["juice-10"].values():
        to.update(low="25 min", mode="35 min", high="50 min")


@pytest.mark.slow
def test_a_variant_runs_with_the_same_random_numbers_and_shows_what_changed(tmp_path: Path,
                                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """A copy that differs only in its description runs exactly as the line does (every draw the same); one with
    shorter changeovers makes more; both run for the comparison's duration and replications, not their files'."""
    sc = load_scenario(PACKAGING, {"duration": "1 d", "replications": 2})
    same = _variant(tmp_path, lambda d: d.update(description="the same line, said otherwise", duration="9 d"),
                    "same.yaml")
    smed = _variant(tmp_path, _shorter_changeovers, "smed.yaml")
    options = alternatives(sc, [], [], [], variants=[str(same), str(smed)])
    assert [label for label, _ in options] == ["as is", "variant same.yaml", "variant smed.yaml"]
    assert all(alt.duration == sc.duration and alt.replications == 2 for _, alt in options)
    said = " ".join(capsys.readouterr().err.split())
    assert "note: variant smed.yaml differs from the line in: stations[filler].setup_matrix.juice-10.still-05.low: " \
           "3600.0 → 1500.0" in said, said
    cmp = compare_designs(options, jobs=1)
    got = cmp.kpis.pivot_table(index=["kpi", "replication"], columns="policy", values="value")
    assert (got["variant same.yaml"] == got["as is"]).all()
    parts = got.loc["throughput [parts/h]"]
    assert (parts["variant smed.yaml"] > parts["as is"]).all()
    # the report says which loss the project removes: the filler's changeovers (setup), as a share of planned time
    report = write_report(cmp, tmp_path / "report").read_text()
    table = report.split("## Where the planned time went")[1].split("\n\n")[1]
    setup = next(line for line in table.splitlines() if line.startswith("| setup"))
    as_is, same_, smed_ = (float(x) for x in setup.strip("|").split("|")[1:])
    assert as_is == same_ > smed_ > 0 and "| OEE (fully productive)" in table


def test_a_variant_of_a_what_if_starts_from_the_same_state(tmp_path: Path) -> None:
    """In a what-if the variant continues from the state read (its clock, its machines' states, its buffers'
    levels), not from its file's start; a copy that changes nothing that runs makes exactly what the line does."""
    from twin.app.compare import whatif_task
    from twin.scenario import continue_from

    sc = load_scenario(PACKAGING, {"duration": "4 h", "replications": 2})
    now = LineNow(taken=sc.start.replace(hour=14), machines={"capper": MachineNow(state="working", since=1.0)},
                  buffers={"filler": 40, "capper": 7}, source="test")
    here = continue_from(sc, now)[0]
    same = _variant(tmp_path, lambda d: d.update(description="said otherwise"), "same.yaml")
    smed = _variant(tmp_path, _shorter_changeovers, "smed.yaml")
    options = alternatives(here, [], [], [], variants=[str(same), str(smed)])
    for _, alt in options[1:]:
        assert alt.now == here.now and alt.start == here.start and alt.warmup == 0
        assert [st.initial for st in alt.stations] == [st.initial for st in here.stations]
    assert [st.initial for st in here.stations][1:3] == [40, 7]
    runs = [whatif_task(alt.model_dump_json(by_alias=True), alt._slots, label, 0) for label, alt in options[:2]]
    assert runs[0][2] == pytest.approx(runs[1][2], nan_ok=True, rel=0, abs=0)


def test_mistakes_in_a_variant_are_named(tmp_path: Path) -> None:
    other = _variant(tmp_path, lambda d: d["line"].update(name="packaging-2"), "other.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("line: {site: a}\n")
    smed = _variant(tmp_path, _shorter_changeovers, "smed.yaml")
    base = ["compare", str(PACKAGING), "--replications", "2", "--duration", "4 h", "--out", str(tmp_path / "r")]
    assert_mistakes(base, [
        (["--variant", str(PACKAGING)], f"--variant {PACKAGING}: the same line as the scenario; change what the "
                                        "project would change in the copy"),
        (["--variant", str(other)], "its line is plant-hamburg/hall-3/packaging-2, not plant-hamburg/hall-3/"
                                    "packaging-1; a variant is another version of the same line"),
        (["--variant", str(broken)], "--variant: "),
        (["--variant", str(smed), "--buffer", "capper=100", "--combined"],
         "--combined runs the alternatives given together as one more: give two or more (a --variant is a whole "
         "version of the line and runs on its own)"),
        (["--variant", str(smed), "--variant", str(smed)], "is given twice")])


def test_differences_name_what_changed_by_name_or_place() -> None:
    a = {"stations": [{"name": "a", "scrap": 0.1}, {"name": "b"}], "costs": {"repair": 1}, "k": [1, 2]}
    b = {"stations": [{"name": "a", "scrap": 0.05}, {"name": "b"}], "costs": {}, "k": [1, 3], "new": 1}
    assert differences(a, b) == ["stations[a].scrap: 0.1 → 0.05", "costs.repair: removed", "k[1]: 2 → 3",
                                 "new: added"]
