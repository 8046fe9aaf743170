"""The packages' imports follow the data flow (docs/architecture.md): the import-linter contracts in pyproject.toml
hold, cover every module of the simulation core, and break when the core reaches up."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("twin", "sensors", "predictors", "dashboard")
LINT = [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; "
        "sys.exit(lint_imports_command())"]


def contracts() -> list[dict]:  # type: ignore[type-arg]
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]


def lint(root: Path) -> subprocess.CompletedProcess[str]:
    """lint-imports on the packages under `root` (found first on the path), as `make check` runs it."""
    return subprocess.run(LINT, cwd=root, capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(root)})


def test_the_core_contract_names_every_module_of_the_core() -> None:
    core = next(c for c in contracts() if c["type"] == "forbidden")
    modules = {f"twin.{p.stem}" for p in (ROOT / "twin").glob("*.py") if p.stem != "__init__"}
    assert set(core["source_modules"]) == modules, "a new core module must join the core contract in pyproject.toml"
    assert set(core["forbidden_modules"]) == {"twin.app", "sensors", "predictors", "dashboard"}


def test_the_contracts_hold() -> None:
    r = lint(ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"Contracts: {len(contracts())} kept, 0 broken." in r.stdout


@pytest.mark.parametrize(("module", "line", "broken"), [
    ("twin/kpi.py", "import sensors.bus.payloads", "twin.kpi -> sensors.bus.payloads"),
    ("twin/model.py", "from predictors import alerts", "twin.model -> predictors.alerts"),
    ("sensors/ingest.py", "import predictors.alerts", "sensors.ingest -> predictors.alerts"),
    ("predictors/alerts.py", "import twin.app.options", "predictors.alerts -> twin.app.options"),
])
def test_an_upward_import_breaks_the_contracts(module: str, line: str, broken: str, tmp_path: Path) -> None:
    for pkg in PACKAGES:
        shutil.copytree(ROOT / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    with (tmp_path / module).open("a") as f:
        f.write(f"\n{line}  # an upward import\n")
    r = lint(tmp_path)
    assert r.returncode == 1 and "BROKEN" in r.stdout and broken in r.stdout, r.stdout + r.stderr
