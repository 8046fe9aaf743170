"""Scenario files: bundled ones are valid; every user mistake is one clear ScenarioError, never a crash."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sensors.bank import SensorBank
from twin.distributions import parse_duration
from twin.model import Line
from twin.scenario import Scenario, ScenarioError, json_schema, load_scenario

BUNDLED = sorted(Path("scenarios").glob("*.yaml"))
ROOT = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, data: Any, name: str = "line.yaml") -> Path:
    p = tmp_path / name
    p.write_text(yaml.safe_dump(data, sort_keys=False) if not isinstance(data, str) else data)
    return p


def valid() -> dict[str, Any]:
    return yaml.safe_load(Path("scenarios/bottling.yaml").read_text())


def error_of(tmp_path: Path, data: Any) -> str:
    with pytest.raises(ScenarioError) as e:
        load_scenario(write(tmp_path, data))
    return str(e.value)


def test_at_least_three_bundled_scenarios_from_4_to_12_stations() -> None:
    assert len(BUNDLED) >= 3
    sizes = [len(load_scenario(p).stations) for p in BUNDLED]
    assert min(sizes) >= 4 and max(sizes) <= 12 and 10 in sizes


@pytest.mark.parametrize("path", BUNDLED, ids=lambda p: p.stem)
def test_bundled_scenarios_are_valid_and_commented(path: Path) -> None:
    sc = load_scenario(path)
    assert sc.stations and sc.machine_types
    assert sum(1 for line in path.read_text().splitlines() if line.lstrip().startswith("#")) >= 3
    modes = [fm for mt in sc.machine_types.values() for fm in mt.fault_modes]
    assert len({fm.name for fm in modes}) >= 3
    assert all(len(mt.fault_modes) >= 2 for mt in sc.machine_types.values())
    assert all(any(fm.kind == "wear" and fm.signature for fm in mt.fault_modes) for mt in sc.machine_types.values())


@pytest.mark.parametrize(("text", "seconds"), [("90", 90.0), ("90 s", 90.0), ("1.5min", 90.0), ("8 h", 28800.0),
                                                ("2 d", 172800.0), ("250 ms", 0.25), (12, 12.0)])
def test_durations_with_units(text: Any, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_error_names_file_line_field_and_value(tmp_path: Path) -> None:
    text = Path("scenarios/bottling.yaml").read_text().replace("{dist: normal, mean: 0.88 s, sd: 0.05 s}",
                                                                 "{dist: normal, mean: -3, sd: 0.05 s}")
    msg = error_of(tmp_path, text)
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "mean: -3" in t)
    assert f"line.yaml:{line} stations[1].cycle_time.mean: must be greater than 0, got -3" in msg


@pytest.mark.parametrize(("mutate", "expected"), [
    (lambda d: d["stations"][0].update(colour="red"), r"stations\[0\]\.colour: unknown key"),
    (lambda d: d.pop("seed"), r"seed: required field is missing"),
    (lambda d: d["stations"][2].update(machine_type="fillr"), r"uses machine_type 'fillr', which is not defined"),
    (lambda d: d["stations"][1].update(cycle_time={"dist": "gauss", "mean": 1}),
     r"stations\[1\]\.cycle_time: .*'gauss'"),
    (lambda d: d["stations"][1].update(buffer=-1), r"stations\[1\]\.buffer: must be greater than or equal to 0"),
    (lambda d: d.update(duration="8 parsecs"), r"duration: unknown time unit 'parsecs'"),
    (lambda d: d.update(warmup="9 h"), r"warmup .* must be shorter than duration"),
    (lambda d: d["stations"][1].update(buffer=2, initial=5), r"initial=5 parts in a buffer of capacity 2"),
    (lambda d: d["machine_types"]["filler"].update(repair_crew="ghosts"), r"names repair crew 'ghosts'"),
    (lambda d: d["machine_types"]["filler"]["fault_modes"][0]["signature"].update(flux=1),
     r"signature names sensor 'flux'"),
    (lambda d: d["machine_types"]["filler"]["maintenance"].pop("threshold"), r"needs 'threshold'"),
    (lambda d: d["stations"][3].update(name="filler"), r"name 'filler' is used twice"),
    (lambda d: d["stations"][1].update(cycle_time=0), r"mean cycle time must be at least 1 ms"),
    (lambda d: d.update(calendar={"shifts": ["22:00-06:00"]}), r"ends before it starts"),
    (lambda d: d["stations"][0].update(buffer=5), r"source is saturated"),
    (lambda d: d["line"].update(name="line/1"), r"line\.name: String should match pattern"),
    (lambda d: d["stations"][1].update(cycle_time={"dist": "triangular", "low": 3, "mode": 1, "high": 2}),
     r"need low <= mode <= high"),
])
def test_user_mistakes_are_explained(tmp_path: Path, mutate: Any, expected: str) -> None:
    data = valid()
    mutate(data)
    msg = error_of(tmp_path, data)
    assert msg.startswith("line.yaml")
    assert re.search(expected, msg), msg
    assert "Traceback" not in msg and "\n" not in msg


@pytest.mark.parametrize("text", ["line: {site: a\n  seed: [", "- just\n- a list\n", "", "\x00\x01binary"])
def test_broken_files(tmp_path: Path, text: str) -> None:
    msg = error_of(tmp_path, text)
    assert msg.startswith("line.yaml")


def test_missing_file_is_a_scenario_error(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="cannot read"):
        load_scenario(tmp_path / "nope.yaml")


JUNK = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
                 st.text(max_size=12), st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5),
                                                                                           st.integers(), max_size=2),
                 st.sampled_from(["-5 s", "3 fortnights", "1e400", "exponential", "nan", "inf", "0"]))


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


@st.composite
def mutated(draw: st.DrawFn) -> dict[str, Any]:
    data = copy.deepcopy(valid())
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(data)
        path = draw(st.sampled_from(paths))
        parent = data
        for key in path[:-1]:
            parent = parent[key]
        action = draw(st.sampled_from(["replace", "delete", "add", "rename"]))
        last = path[-1]
        if action == "replace":
            parent[last] = draw(JUNK)
        elif action == "delete":
            del parent[last]
        elif action == "add" and isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=8))] = draw(JUNK)
        elif action == "rename" and isinstance(parent, dict):
            parent[str(last) + draw(st.sampled_from(["_", "s", "x"]))] = parent.pop(last)
    return data


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=mutated())
def test_any_mutation_is_valid_or_a_clear_error(tmp_path: Path, data: dict[str, Any]) -> None:
    path = tmp_path / "mutant.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    try:
        sc = load_scenario(path)
    except ScenarioError as e:
        msg = str(e)
        assert msg.startswith("mutant.yaml"), msg
        assert "Traceback" not in msg
        return
    assert isinstance(sc, Scenario)
    line = Line(sc)  # a valid scenario also runs
    line.run(min(sc.duration, 30.0))
    SensorBank(line).sample(0.0, min(sc.duration, 30.0))


def test_json_schema_is_generated_and_documented() -> None:
    schema = json_schema()
    assert schema["title"] == "linetwin scenario"
    assert {"line", "seed", "duration", "stations", "machine_types"} <= set(schema["properties"])
    committed = json.loads((ROOT / "docs" / "scenario.schema.json").read_text())
    assert committed == schema, "docs/scenario.schema.json is stale: run `twin schema`"


@pytest.mark.parametrize("level", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_numbers_are_refused_with_file_and_line(tmp_path: Path, level: float) -> None:
    """A NaN sensor level once streamed NaN readings that the ingest could only dead-letter: refused up front."""
    data = yaml.safe_load(Path("scenarios/bottling.yaml").read_text())
    data["machine_types"]["filler"]["sensors"][0]["working"] = level
    message = error_of(tmp_path, data)
    assert "line.yaml:" in message and "sensors[0].working" in message and "finite" in message


def _laughs() -> str:
    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"{chr(97 + i)}: &{chr(97 + i)} [{', '.join(['*' + chr(96 + i)] * 10)}]" for i in range(1, 9)]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(("text", "expected"), [
    ("seed: 1\nline: {site: a, area: b, name: c}\nseed: 2\n", "line.yaml:3: key 'seed' appears twice"),
    (_laughs(), "expands to more than 200,000 values"),
    ("[" * 5000 + "]" * 5000, "nested too deeply"),
    ("x: [" + "[" * 40 + "]" * 40 + "]\n", "nested more than 32 levels deep"),
    ("# " + "x" * (1 << 20) + "\n", "more than a scenario file may hold"),
])
def test_hostile_yaml_is_refused_quickly_with_file_and_line(tmp_path: Path, text: str, expected: str) -> None:
    """Duplicate keys (YAML keeps the last silently), an alias bomb, deep nesting, a huge file: a clear error at once,
    never a hang, a traceback or unbounded memory."""
    import time

    t = time.perf_counter()
    message = error_of(tmp_path, text)
    assert expected in message and message.startswith("line.yaml")
    assert time.perf_counter() - t < 5
