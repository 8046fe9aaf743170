"""The durable FIFO on disk that the ingest spools into while its store is away (and the publisher spills into)."""

from __future__ import annotations

from pathlib import Path

from sensors.bus.spool import Spool


def test_messages_stay_in_order_on_disk_until_handled_and_an_empty_spool_leaves_no_file(tmp_path: Path) -> None:
    path = tmp_path / "spool" / "ingest.sqlite"
    spool = Spool(path)
    assert len(spool) == 0 and not spool and spool.peek(10) == [] and not path.exists()  # nothing spooled: no file
    spool.put_many([("a/telemetry", b"1", 0), ("a/telemetry", b"2", 0)])
    spool.put_many([("a/state", b"3", 1)])
    spool.put_many([("a/telemetry", b"0", 0)], front=True)  # ahead of everything held
    assert [(t, p, f) for _, t, p, f in spool.peek(10)] == [("a/telemetry", b"0", 0), ("a/telemetry", b"1", 0),
                                                            ("a/telemetry", b"2", 0), ("a/state", b"3", 1)]
    spool.close()  # a crash before they are handled: they are still there for the next worker
    again = Spool(path)
    first_two = again.peek(2)
    assert [p for *_, p, _ in first_two] == [b"0", b"1"] and len(again) == 4 and again  # holds some: true
    again.delete_through(first_two[-1][0])  # handled: gone
    assert [p for *_, p, _ in again.peek(10)] == [b"2", b"3"]
    again.close()
    assert path.exists()  # still holds two
    last = Spool(path)
    last.delete_through(last.peek(10)[-1][0])
    assert not last  # handled, all of them: empty, though its file is open
    last.close()
    assert not path.exists() and not Path(f"{path}-wal").exists()


def test_the_started_runs_beside_the_spool_survive_a_restart_and_a_line_cut_short(tmp_path: Path) -> None:
    """The ingest's note of started runs: on disk when `add` returns, read back by the next worker; a last line cut
    short by a crash is skipped (that run's retained status tells it again), never an error at start."""
    from sensors.ingest import KnownRuns

    path = tmp_path / "spool" / "ingest.runs"
    runs = KnownRuns(path)
    runs.add("line-1-run-a")
    runs.add("line-1-run-a")  # once
    runs.add('odd "name"')
    assert "line-1-run-a" in runs and "other" not in runs
    assert path.read_text().count("run-a") == 1
    with open(path, "a", encoding="utf-8") as f:
        f.write('"line-1-run-b')  # the crash came mid-line
    again = KnownRuns(path)
    assert "line-1-run-a" in again and 'odd "name"' in again and "line-1-run-b" not in again
    again.add("line-1-run-c")  # on a line of its own after the cut one
    assert "line-1-run-c" in KnownRuns(path)
