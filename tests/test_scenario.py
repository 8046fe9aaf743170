"""Scenario files: bundled ones are valid; every user mistake is one clear ScenarioError, never a crash."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sensors.bank import SensorBank
from tests.helpers import mutated
from twin.distributions import parse_duration
from twin.model import Line
from twin.scenario import Scenario, ScenarioError, json_schema, load_scenario

BUNDLED = sorted(Path("scenarios").glob("*.yaml"))
DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml where PyYAML has it, as the loader
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
                                                ("2 d", 172800.0), ("250 ms", 0.25), (12, 12.0),
                                                # written out, as plant records and engineers write them
                                                ("30 hours", 108000.0), ("1 Minute", 60.0), ("2 weeks", 1209600.0),
                                                ("1 w", 604800.0), ("3 days", 259200.0), ("45 secs", 45.0)])
def test_durations_with_units(text: Any, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_a_time_too_large_for_a_number_is_refused_where_times_are_read() -> None:
    """'1e400' was read as an infinite time, which each reader of times had to refuse on its own."""
    for text in ("1e400", "1e308 d"):
        with pytest.raises(ValueError, match="is beyond any time a line runs"):
            parse_duration(text)


def test_error_names_file_line_field_and_value(tmp_path: Path) -> None:
    text = Path("scenarios/bottling.yaml").read_text().replace("{dist: normal, mean: 0.88 s, sd: 0.05 s}",
                                                                 "{dist: normal, mean: -3, sd: 0.05 s}")
    msg = error_of(tmp_path, text)
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "mean: -3" in t)
    assert f"line.yaml:{line} stations[1].cycle_time.mean: must be greater than 0, got -3" in msg


@pytest.mark.parametrize(("mutate", "expected"), [
    (lambda d: d["stations"][0].update(colour="red"), r"stations\[0\]\.colour: unknown key"),
    (lambda d: d.pop("seed"), r"seed: required field is missing"),
    (lambda d: d["stations"][2].update(machine_type="fillr"),
     r"stations\[2\]\.machine_type: machine type 'fillr' is not defined"),
    (lambda d: d["stations"][1].update(cycle_time={"dist": "gauss", "mean": 1}),
     r"stations\[1\]\.cycle_time: .*'gauss'"),
    (lambda d: d["stations"][1].update(buffer=-1), r"stations\[1\]\.buffer: must be greater than or equal to 0"),
    (lambda d: d.update(duration="8 parsecs"), r"duration: unknown time unit 'parsecs'"),
    (lambda d: d.update(warmup="9 h"), r"warmup .* must be shorter than duration"),
    (lambda d: d["stations"][1].update(buffer=2, initial=5),
     r"stations\[1\]\.initial: starts with 5 parts in a buffer of capacity 2"),
    (lambda d: d["machine_types"]["filler"].update(repair_crew="ghosts"), r"names repair crew 'ghosts'"),
    (lambda d: d["machine_types"]["filler"]["fault_modes"][0]["signature"].update(flux=1),
     r"signature names sensor 'flux'"),
    (lambda d: d["machine_types"]["filler"]["maintenance"].pop("threshold"), r"watches a measured sensor"),
    (lambda d: d["stations"][3].update(name="filler"), r"stations\[3\]\.name: station 'filler' is used twice"),
    (lambda d: d["stations"][1].update(cycle_time=0), r"mean cycle time must be at least 1 ms"),
    (lambda d: d.update(calendar={"shifts": ["06:00-06:00"]}), r"starts when it ends"),
    (lambda d: d["stations"][0].update(buffer=5), r"stations\[0\]\.buffer: .*the source, which is saturated"),
    (lambda d: d["line"].update(name="line/1"), r"line\.name: String should match pattern"),
    (lambda d: d["stations"][1].update(cycle_time={"dist": "triangular", "low": 3, "mode": 1, "high": 2}),
     r"need low <= mode <= high"),
    # issue 20's input bounds: these once gave an OverflowError traceback, a zero-time loop, unbounded memory
    (lambda d: d["stations"][1].update(cycle_time={"dist": "weibull", "shape": 0.001, "scale": 10}),
     r"stations\[1\]\.cycle_time\.shape: must be greater than or equal to 0\.05"),
    (lambda d: d["machine_types"]["filler"]["fault_modes"][2].update(ttf=0, repair=0),
     r"fault_modes\[2\]\.ttf: the mean time to failure must be at least 1 s"),
    (lambda d: d["stations"][1].update(initial=10**12), r"stations\[1\]\.initial: must be less than or equal"),
    (lambda d: d.update(start="1500-01-01T00:00:00"), r"start: must be between 1970 and 2200"),
    (lambda d: d["machine_types"]["filler"]["fault_modes"][0].update(repair={"dist": "lognormal", "mean": "35 min",
                                                                             "sd": 1e200}),
     r"fault_modes\[0\]\.repair: sd 1e\+200 s is more than 1000 times the mean"),
    (lambda d: d["machine_types"]["filler"].update(mtbf="30 h"),
     r"machine_types\.filler: mtbf without mttr: give both"),
    # a mapping written as a word: its keys, not pydantic's 'instance of LineId'
    (lambda d: d.update(line="bottling"), r"line: must be a mapping of area, name, site, timezone \(see "
                                          r"docs/scenario\.md\), got 'bottling'"),
    (lambda d: d.update(costs=5), r"costs: must be a mapping of call_out, currency, energy, .*, got 5"),
    (lambda d: d["machine_types"]["filler"].update(mtbf="30 h", mttr=0),
     r"machine_types\.filler\.mttr: .*greater than 0"),
    (lambda d: d["machine_types"]["filler"].update(mtbf="30 h", mttr="1 h", fault_modes=[
        {"name": "breakdown", "kind": "sudden", "ttf": "5 h", "repair": "5 min"}]), r"has one of that name already"),
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


FUZZ_BASES = {path: yaml.safe_load(Path(path).read_text())  # serial, graph, products, conveyors, an oven, power
              for path in ("scenarios/bottling.yaml", "scenarios/body_shop_merge.yaml", "scenarios/packaging.yaml",
                           "tests/scenarios/heat_treat.yaml")}
FUZZ_BASES["packaging with orders"] = {**FUZZ_BASES["scenarios/packaging.yaml"], "orders": [  # an order book
    {"product": "juice-10", "parts": 500, "order": "A-1", "due": "2026-01-05T12:00:00"},
    {"product": "still-05", "parts": 800}]}


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=mutated(FUZZ_BASES))
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


def _as_json(data: Any) -> Any:
    """A YAML document as an editor's JSON view sees it (timestamps are strings)."""
    return json.loads(json.dumps(data, default=lambda x: x.isoformat() if hasattr(x, "isoformat") else str(x)))


def _example_blocks() -> list[str]:
    """The complete scenarios docs/scenario.md shows (```yaml blocks)."""
    text = (ROOT / "docs" / "scenario.md").read_text()
    return [b.split("\n", 1)[1] for b in text.split("```")[1::2] if b.startswith("yaml")]


def test_published_schema_accepts_every_bundled_and_documented_scenario(tmp_path: Path) -> None:
    """The schema once rejected the bundled bottling.yaml 41 times ('8 h' is not a number; 'gt' is no keyword)."""
    import jsonschema

    schema = json.loads((ROOT / "docs" / "scenario.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    checker = jsonschema.Draft202012Validator(schema)
    examples = _example_blocks()
    assert examples, "docs/scenario.md shows no complete example"
    files = [*BUNDLED, *sorted(Path("bench/scenarios").glob("*.yaml")), *sorted(Path("tests/scenarios").glob("*.yaml"))]
    files += [write(tmp_path, text, f"example{i}.yaml") for i, text in enumerate(examples)]
    for f in files:
        load_scenario(f)  # the validator takes it ...
        errors = [f"{list(e.absolute_path)}: {e.message}" for e in checker.iter_errors(_as_json(yaml.safe_load(
            f.read_text())))]
        assert not errors, f"{f}: {errors[:5]}"  # ... and so does the schema


def test_schema_refuses_what_the_validator_refuses() -> None:
    import jsonschema

    checker = jsonschema.Draft202012Validator(json_schema())
    for change in ({"duration": "-8 h"}, {"duration": "8 hourz"}, {"duration": 0}, {"warmup": "-1 s"},
                   {"seed": -1}, {"blocking": "sometimes"}, {"frobnicate": 1}):
        assert not checker.is_valid(_as_json({**valid(), **change})), change


_DURATION_TEXT = st.from_regex(r"\A[ \t]?[-+]?[0-9]{0,3}(\.[0-9]{0,2})?([eE][-+]?[0-9]{1,2})?[ \t]?"
                               r"(ms|s|sec|min|h|hr|d|day|MIN|H|hours|x)?[ \t\n]?\Z")


@settings(max_examples=200, deadline=None)
@given(_DURATION_TEXT | st.text(max_size=8))
def test_duration_strings_schema_and_validator_agree(text: str) -> None:
    """A time written as text: the schema's pattern matches exactly when the validator takes it (times >= 0 and
    times > 0)."""
    from pydantic import TypeAdapter, ValidationError

    from twin.distributions import duration, duration_schema

    for schema, kind in ((duration_schema(0.0), duration(ge=0)),
                         (duration_schema(0.0, exclusive=True), duration(gt=0))):
        pattern = schema["anyOf"][1]["pattern"]
        try:
            TypeAdapter(kind).validate_python(text)
            taken = True
        except ValidationError:
            taken = False
        assert (re.search(pattern, text) is not None) == taken, (text, pattern)


def test_cross_reference_errors_come_with_field_errors_and_lines(tmp_path: Path) -> None:
    """An undefined machine type and a duplicate station once showed only after the field errors were fixed, and
    without a line."""
    text = Path("scenarios/bottling.yaml").read_text()
    text = text.replace("machine_type: filler", "machine_type: filer").replace("{name: capper,", "{name: rinser,")
    text = text.replace("duration: 8 h", "duration: -8 h")
    message = error_of(tmp_path, text)
    assert "3 problems" in message
    assert re.search(r"line\.yaml:9 duration: a time cannot be negative, got '-8 h'", message)
    assert re.search(r"line\.yaml:1[0-9][0-9] stations\[2\]\.machine_type: machine type 'filer' is not defined",
                     message)
    assert re.search(r"line\.yaml:11[0-9] stations\[3\]\.name: station 'rinser' is used twice \(first at "
                     r"stations\[1\]\.name\)", message)


@pytest.mark.slow  # 1,000 files through the validator
def test_validate_fuzz_of_a_thousand_files_no_traceback_within_time_and_memory(tmp_path: Path) -> None:
    """Issue 20: 1,000 mutants of the bundled scenarios through the validator `twin validate` calls, in a fresh
    process: no traceback, every refusal naming its file, no file over 5 s, and the process under 300 MB."""
    import subprocess
    import sys

    files: list[Path] = []

    @settings(max_examples=1000, deadline=None, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(data=mutated(FUZZ_BASES))
    def write_one(data: dict[str, Any]) -> None:
        f = tmp_path / f"m{len(files):04d}.yaml"
        f.write_text(yaml.dump(data, Dumper=DUMPER, allow_unicode=True))  # 1,000 big files
        files.append(f)

    write_one()
    assert len(files) >= 1000
    script = ("import sys, time\n"
              "from twin.scenario import ScenarioError, load_scenario\n"
              "worst = 0.0\n"
              "for f in sys.argv[1:]:\n"
              "    t = time.perf_counter()\n"
              "    try:\n"
              "        load_scenario(f)\n"
              "    except ScenarioError as e:\n"
              "        name = f.rsplit('/', 1)[-1]\n"
              "        assert str(e).startswith(name), (f, str(e)[:200])\n"
              "    worst = max(worst, time.perf_counter() - t)\n"
              "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM:')][0].split()[1]\n"
              "print(worst, hwm)\n")  # this process's own peak (ru_maxrss would carry the forking parent's over)
    r = subprocess.run([sys.executable, "-c", script, *map(str, files)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-3000:]
    worst, rss_kb = r.stdout.split()
    print(f"validate fuzz: {len(files)} files, slowest {float(worst):.3f} s, peak {int(rss_kb) / 1024:.0f} MB")
    assert float(worst) < 5.0, f"slowest file took {float(worst):.2f} s"
    assert int(rss_kb) < 300 * 1024, f"peak memory {int(rss_kb) / 1024:.0f} MB"


def test_a_control_character_is_named_with_its_line_in_one_paragraph(tmp_path: Path) -> None:
    """libyaml's reader error spans lines and names "<unicode string>": the message gives the file's line instead."""
    message = error_of(tmp_path, "seed: 1\nline: {name: Zürich Süd}\nduration: 8 h\x07\n")
    assert message.startswith("line.yaml:3: not valid YAML (control characters are not allowed, U+0007)")
    assert "\n" not in message and "unicode string" not in message


def test_a_typo_in_a_route_is_named_with_the_name_meant_and_nothing_it_implies(tmp_path: Path) -> None:
    """A route to 'filer' made the filler a station no one feeds, and the error listed that as its own problem (the
    filler 'takes parts from the source ... has no buffer'), beside the typo itself."""
    data = valid()
    data["stations"][1]["next"] = "filer"
    data["stations"][3]["machine_type"] = "conveyor_machin"
    msg = error_of(tmp_path, data)
    assert "stations[1].next: no station named 'filer', did you mean 'filler'?" in msg, msg
    assert "machine type 'conveyor_machin' is not defined, did you mean 'conveyor_machine'?" in msg, msg
    assert "2 problems" in msg and "saturated" not in msg, msg


def test_a_decimal_comma_is_named_as_such(tmp_path: Path) -> None:
    """A German engineer writes 0,85 s: in a YAML {...} mapping the comma splits it, and the file was refused as
    'mean: must be greater than 0; 85 s: unknown key'; on the command line '1,5 h' was 'not a duration' with no word
    of the comma. Both now say to write a decimal point."""
    text = (ROOT / "scenarios" / "bottling.yaml").read_text()
    assert "mean: 0.85 s, sd: 0.05 s" in text
    f = tmp_path / "comma.yaml"
    f.write_text(text.replace("mean: 0.85 s, sd: 0.05 s", "mean: 0,85 s, sd: 0.05 s"))
    with pytest.raises(ScenarioError, match=r"comma.yaml:\d+ stations\[0\]\.cycle_time\.85 s: unknown key '85 s': the "
                                            r"rest of a number written with a decimal comma\? .* write numbers with "
                                            r"a decimal point \(0\.85 s\)"):
        load_scenario(f)
    f.write_text(text.replace("progression: 2.5", "progression: 2,5"))  # a plain number, outside {...}
    with pytest.raises(ScenarioError, match=r"progression: must be a valid number, .* got '2,5'; write it with a "
                                            r"decimal point, 2\.5$"):
        load_scenario(f)
    for written, meant in (("1,5 h", "1.5 h"), ("90,25", "90.25"), (" 2,0 min ", "2.0 min")):
        with pytest.raises(ValueError, match=f"not a duration: '{written}'; write it with a decimal point, {meant}$"):
            parse_duration(written)


def test_a_misspelt_key_is_named_with_the_key_meant_there(tmp_path: Path) -> None:
    """'unknown key' alone left the user to find the spelling in the docs; a union's other member ('next' given as a
    list of routes: 'must be a valid string') and its tag ('next.list[Route][0]') were noise around the real error,
    and a route without its station made every station one that 'can never leave the line'."""
    data = valid()
    data["stations"][1]["cycletime"] = data["stations"][1].pop("cycle_time")
    data["stations"][2]["buffers"] = data["stations"][2].pop("buffer")  # 'buffers' is a key elsewhere (now:)
    data["stations"][0]["next"] = [{"too": "rinser", "p": 1.0}]
    data["stations"][3]["cycle_time"] = {"dist": "normal", "meen": "0.85 s", "sd": "0.04 s"}
    msg = error_of(tmp_path, data)
    assert "stations[1].cycletime: unknown key, did you mean 'cycle_time'?" in msg, msg
    assert "stations[2].buffers: unknown key, did you mean 'buffer'?" in msg, msg
    assert "stations[0].next[0].too: unknown key, did you mean 'to'?" in msg, msg
    assert "stations[3].cycle_time.meen: unknown key, did you mean 'mean'?" in msg, msg
    assert "valid string" not in msg and "list[Route]" not in msg and "never leave the line" not in msg, msg
