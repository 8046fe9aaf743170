"""Uploaded scenario files: whatever name the browser sends, nothing is written outside the dashboard's folder."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dashboard import data


@pytest.fixture(autouse=True)
def own_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))


def _inside(path: Path) -> bool:
    return path.resolve().is_relative_to(data.uploads_dir().resolve())


@pytest.mark.parametrize("name", ["../../x.yaml", "/etc/cron.d/x.yaml", "..\\..\\x.yaml", "C:\\x.yaml", ".bashrc",
                                  "a/../../../b.yml", "", "x" * 400])
def test_named_paths_land_in_the_uploads_folder(name: str, tmp_path: Path) -> None:
    before = set(tmp_path.parent.rglob("*"))
    path = data.save_upload(name, b"line: {}\n")
    assert _inside(path) and path.read_bytes() == b"line: {}\n" and path.suffix in (".yaml", ".yml")
    assert not path.name.startswith(".") and len(path.name) <= 105
    new = set(tmp_path.parent.rglob("*")) - before
    assert all(p.resolve().is_relative_to(tmp_path.resolve()) for p in new)  # nothing written elsewhere
    assert not Path("/etc/cron.d/x.yaml").exists() and not (tmp_path.parent.parent / "x.yaml").exists()


@given(name=st.text(max_size=300))
@settings(max_examples=300, deadline=None)
def test_any_name_is_reduced_to_a_safe_base_name(name: str) -> None:
    path = data.save_upload(name, b"seed: 1\n")
    assert _inside(path) and path.parent.parent == data.uploads_dir()


def test_an_oversized_upload_is_refused() -> None:
    with pytest.raises(ValueError, match="larger than a scenario file may be"):
        data.save_upload("big.yaml", b"x" * (data.MAX_UPLOAD + 1))


def test_a_plants_log_keeps_its_kind_and_other_files_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """A status log or stop list uploaded for a what-if (the Scenarios page) keeps the kind it is read as (CSV, Excel,
    Parquet) under a safe name; any other file, or one larger than Streamlit lets through, is refused by name."""
    for name in ("status.csv", "../../Störungen 2026.xlsx", "log.PARQUET", "C:\\mes\\export.xls"):
        path = data.save_upload(name, b"timestamp,machine,state\n", log=True)
        assert _inside(path) and path.suffix.lower() == Path(name.replace("\\", "/")).suffix.lower()
    for name in ("status.exe", "status", "../../x.yaml"):
        with pytest.raises(ValueError, match=f"{name!r} is not a status log or stop list file"):
            data.save_upload(name, b"x", log=True)
    monkeypatch.setattr(data, "MAX_LOG_UPLOAD", 1000)  # 200 MB, as Streamlit's own limit
    with pytest.raises(ValueError, match="larger than a log may be"):
        data.save_upload("big.csv", b"x" * 1001, log=True)


@given(name=st.text(max_size=300), kind=st.sampled_from(["", ".csv", ".XLSX", ".parquet", ".exe"]))
@settings(max_examples=200, deadline=None)
def test_any_log_name_is_kept_safe_or_refused(name: str, kind: str) -> None:
    try:
        path = data.save_upload(name + kind, b"timestamp,machine,state\n", log=True)
    except ValueError as e:
        assert "is not a status log or stop list file" in str(e)
        return
    assert _inside(path) and path.parent.parent == data.uploads_dir()
    assert path.suffix.lower().lstrip(".") in data.LOG_KINDS and not path.name.startswith(".")
