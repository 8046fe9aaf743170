"""The platform's own records, kept in one SQLite file that outlives runs and dashboard restarts: the index of runs
(wherever `--out` wrote them), the alarm book (each alert's lifecycle: active/cleared × unacknowledged/acknowledged,
with who acknowledged, cleared or commented, and when) and the audit log of what people did in the dashboard.

SQLite in WAL mode admits many readers and one writer at a time across processes (a run, its forecaster and every
dashboard session write here); each write is one short transaction, waited for up to 10 s when another holds it.
The file lives in the linetwin home: $LINETWIN_HOME, else $XDG_DATA_HOME/linetwin, else ~/.local/share/linetwin.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:  # the scenario model loads where a run folder is read: the alarm desk and `twin alerts` need none
    from twin.scenario import Scenario

ACTIVE_STATES = ("raised", "updated")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (path TEXT PRIMARY KEY, run_id TEXT, line TEXT, scenario TEXT, status TEXT,
                                 written REAL);
CREATE TABLE IF NOT EXISTS alarms (
    id INTEGER PRIMARY KEY, key TEXT UNIQUE, line TEXT, run TEXT, replication INTEGER, station TEXT, machine TEXT,
    fault_mode TEXT, severity TEXT, probability REAL, rul_s REAL, raised_ms INTEGER, updated_ms INTEGER,
    cleared_ms INTEGER, cleared_by TEXT, active INTEGER, acked_by TEXT, acked_at REAL, ack_comment TEXT,
    notified INTEGER DEFAULT 0, detail TEXT);
CREATE INDEX IF NOT EXISTS alarms_line ON alarms (line, raised_ms);
CREATE TABLE IF NOT EXISTS alarm_log (alarm INTEGER, at REAL, user TEXT, action TEXT, comment TEXT);
CREATE TABLE IF NOT EXISTS audit (at REAL, user TEXT, role TEXT, action TEXT, detail TEXT);
"""


def _number(v: Any) -> float:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else float("nan")


def _int(v: Any) -> int:
    return int(v) if isinstance(v, int) and not isinstance(v, bool) and abs(v) < 2**62 else 0


def _since(v: Any, ts: int) -> int:
    return int(v) if isinstance(v, int) and not isinstance(v, bool) and abs(v) < 2**62 else ts


def _text(v: Any) -> str:
    """A field of a message as text, bounded (a message is untrusted input)."""
    return "" if v is None else str(v)[:200]


RUN_FILE_LIMIT = 16 << 20  # bytes of a run.json: a scenario and a few fields, far below this


class RunFolderError(ValueError):
    """A run folder whose run.json cannot be read; the message names the file, the field and what to do."""


@dataclass(frozen=True)
class RunFile:
    """A run folder's run.json, checked: the whole document, and what readers of a run take from it."""

    doc: dict[str, Any]
    run_id: str  # '' for a run written before runs had ids
    store: str  # '' for a run that kept no store
    scenario: Scenario


def read_run(folder: Path) -> RunFile:
    """The run.json of a run folder (`twin run`'s, or `twin connect`'s for a plant), or a RunFolderError naming the
    file and the field: a damaged or hand-edited file is refused where it is read, not at its first use."""
    from twin.scenario import ScenarioError, scenario_in

    path = folder / "run.json"
    hint = "give a folder written by `twin run` (or `twin connect`), or run the scenario again"
    if not path.is_file():
        raise RunFolderError(f"{folder}: not a finished twin run folder (it holds no run.json); {hint}")
    try:
        if path.stat().st_size > RUN_FILE_LIMIT:
            raise RunFolderError(f"{path}: over {RUN_FILE_LIMIT >> 20} MB, not a run.json; {hint}")
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RunFolderError(f"{path}: cannot be read ({e}); {hint}") from None
    if not isinstance(doc, dict):
        raise RunFolderError(f"{path}: a JSON {type(doc).__name__}, not a run's record; {hint}")
    for key in ("run_id", "store", "status", "host", "source", "since", "until"):
        if doc.get(key) is not None and not isinstance(doc[key], str):
            raise RunFolderError(f"{path}: {key} is {doc[key]!r}, not text; {hint}")
    pid = doc.get("pid")
    if pid is not None and (isinstance(pid, bool) or not isinstance(pid, int) or not 0 < pid < 2 ** 31):
        raise RunFolderError(f"{path}: pid is {pid!r}, not a process id; {hint}")
    if "scenario" not in doc:
        raise RunFolderError(f"{path}: it holds no scenario; {hint}")
    try:
        sc = scenario_in(doc["scenario"], "run.json's scenario")
    except ScenarioError as e:
        raise RunFolderError(f"{folder}: {e}; {hint}") from None
    return RunFile(doc, doc.get("run_id") or "", doc.get("store") or "", sc)


def run_status(doc: dict[str, Any]) -> str:
    """A run's status from its run.json: `lost` for one that says `running` although its process (on this host) is
    gone, killed where nothing could write its end (SIGKILL, a native library aborting out of memory)."""
    import socket

    status = str(doc.get("status", "finished"))
    pid = doc.get("pid")
    if status == "running" and isinstance(pid, int) and doc.get("host") == socket.gethostname():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return "lost"
        except PermissionError:  # alive, another user's
            return status
    return status


def home() -> Path:
    """linetwin's own folder (the ledger, notification settings): $LINETWIN_HOME, else the XDG data folder."""
    if os.environ.get("LINETWIN_HOME"):
        return Path(os.environ["LINETWIN_HOME"])
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "linetwin"


class LedgerError(RuntimeError):
    """The ledger file cannot be opened or written (permissions, disk full, not an SQLite file)."""


class Ledger:
    """Runs index, alarm book and audit log in `path` (default: home()/linetwin.sqlite)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path is not None else home() / "linetwin.sqlite"
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._db = sqlite3.connect(self.path, timeout=10, check_same_thread=False, isolation_level=None)
            if self.path.stat().st_uid == os.getuid():
                self.path.chmod(0o600)  # acknowledgements, audit trail: the owner's only
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as e:
            raise LedgerError(f"{self.path}: the linetwin ledger cannot be opened ({e}); set LINETWIN_HOME to a "
                              "writable folder") from None

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            except sqlite3.Error as e:
                raise LedgerError(f"{self.path}: cannot write the linetwin ledger ({e})") from None

    def _frame(self, sql: str, args: tuple[Any, ...] = ()) -> pd.DataFrame:
        with self._lock:
            cur = self._db.execute(sql, args)
            return pd.DataFrame(cur.fetchall(), columns=[c[0] for c in cur.description])

    def close(self) -> None:
        self._db.close()

    # --- runs ------------------------------------------------------------------------------------------------

    def register_run(self, path: Path, run_id: str, line: str, scenario: str, status: str) -> None:
        """Record (or update) a run folder, so a dashboard finds it wherever it was written."""
        with self._tx() as db:
            db.execute("INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(path) DO UPDATE SET "
                       "run_id=excluded.run_id, status=excluded.status, written=excluded.written",
                       (str(Path(path).resolve()), run_id, line, scenario, status, time.time()))

    def run_folders(self) -> list[Path]:
        """Every indexed run folder that still exists, newest first."""
        rows = self._frame("SELECT path FROM runs ORDER BY written DESC")
        return [Path(p) for p in rows.path if (Path(p) / "run.json").exists()]

    # --- alarms ----------------------------------------------------------------------------------------------

    def record_alert(self, alert: dict[str, Any]) -> tuple[int, bool]:
        """File one alert message (as docs/mqtt.md defines it) in the alarm book: a raise opens an alarm (again
        only once, whoever files it: the forecaster and every dashboard do), an update refreshes it, a clear ends
        it. Returns the alarm's id and whether it was new."""
        key = "|".join(str(alert.get(k, ""))[:200] for k in ("line", "run", "replication", "machine", "since"))
        ts = _since(alert.get("ts"), 0)
        rul = _number(alert.get("rul", {}).get("estimate_s") if isinstance(alert.get("rul"), dict) else None)
        active = alert["state"] in ACTIVE_STATES
        detail = json.dumps({k: alert.get(k) for k in ("probabilities", "horizon_s", "rul", "model")})
        with self._tx() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO alarms (key, line, run, replication, station, machine, fault_mode, severity, "
                "probability, rul_s, raised_ms, updated_ms, cleared_ms, cleared_by, active, detail) VALUES "
                "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (key, _text(alert.get("line")), _text(alert.get("run")), _int(alert.get("replication")),
                 _text(alert.get("station")), _text(alert["machine"]), _text(alert.get("fault_mode")),
                 _text(alert["severity"]),
                 _number(alert["probability"]), rul, _since(alert.get("since"), ts), ts,
                 None if active else ts, None if active else "forecast", int(active), detail))
            new = cur.rowcount == 1
            if not new:
                if active:
                    db.execute("UPDATE alarms SET severity=?, fault_mode=?, updated_ms=? WHERE key=? AND active=1 "
                               "AND updated_ms<=?", (_text(alert["severity"]), _text(alert.get("fault_mode")), ts, key,
                                                     ts))
                else:
                    db.execute("UPDATE alarms SET active=0, cleared_ms=?, cleared_by='forecast' WHERE key=? AND "
                               "active=1", (ts, key))
            alarm = db.execute("SELECT id FROM alarms WHERE key=?", (key,)).fetchone()[0]
        return int(alarm), new

    def claim_notification(self, alarm: int, level: int) -> bool:
        """True exactly once per alarm and severity level (0 info, 1 warning, 2 critical) it reaches while active:
        of all the processes filing the same alarm, one sends the notification; an escalation is notified again."""
        with self._tx() as db:
            return db.execute("UPDATE alarms SET notified=? WHERE id=? AND notified<? AND active=1",
                              (level + 1, alarm, level + 1)).rowcount == 1

    def acknowledge(self, alarm: int, user: str, comment: str = "") -> None:
        """An operator takes ownership of an alarm: who and when are kept with it and in its log."""
        now = time.time()
        with self._tx() as db:
            if db.execute("UPDATE alarms SET acked_by=?, acked_at=?, ack_comment=? WHERE id=? AND acked_by IS NULL",
                          (user, now, comment, alarm)).rowcount:
                db.execute("INSERT INTO alarm_log VALUES (?, ?, ?, 'acknowledged', ?)", (alarm, now, user, comment))

    def clear(self, alarm: int, user: str, comment: str = "") -> None:
        """An operator ends an alarm by hand (the machine was seen to, the alert is wrong)."""
        now = time.time()
        with self._tx() as db:
            if db.execute("UPDATE alarms SET active=0, cleared_ms=?, cleared_by=? WHERE id=? AND active=1",
                          (int(now * 1000), user, alarm)).rowcount:
                db.execute("INSERT INTO alarm_log VALUES (?, ?, ?, 'cleared', ?)", (alarm, now, user, comment))

    def comment(self, alarm: int, user: str, comment: str) -> None:
        with self._tx() as db:
            db.execute("INSERT INTO alarm_log VALUES (?, ?, ?, 'comment', ?)", (alarm, time.time(), user, comment))

    def end_run(self, run: str) -> int:
        """A finished run's alarms are no longer active (cleared 'run finished'); returns how many."""
        with self._tx() as db:
            return db.execute("UPDATE alarms SET active=0, cleared_ms=updated_ms, cleared_by='run finished' WHERE "
                              "run=? AND active=1", (run,)).rowcount

    def alarms(self, line: str | None = None, *, search: str = "", active: bool | None = None,
               run: str | None = None, machine: str | None = None, limit: int = 5000) -> pd.DataFrame:
        """The alarm book, newest first: a line's, matching `search` (machine, fault mode, severity, run, who
        acknowledged), active or cleared or both."""
        where, args = ["1=1"], []
        if line:
            where.append("line=?")
            args.append(line)
        if active is not None:
            where.append("active=?")
            args.append(int(active))
        for column, value in (("run", run), ("machine", machine)):
            if value is not None:
                where.append(f"{column}=?")
                args.append(value)
        if search:
            where.append("(machine LIKE ? OR fault_mode LIKE ? OR severity LIKE ? OR run LIKE ? OR acked_by LIKE ? "
                         "OR station LIKE ?)")
            args += [f"%{search}%"] * 6
        return self._frame(f"SELECT * FROM alarms WHERE {' AND '.join(where)} ORDER BY raised_ms DESC, id DESC "
                           f"LIMIT {int(limit)}", tuple(args))

    def alarm_log(self, alarm: int | None = None) -> pd.DataFrame:
        if alarm is None:
            return self._frame("SELECT * FROM alarm_log ORDER BY at DESC LIMIT 5000")
        return self._frame("SELECT * FROM alarm_log WHERE alarm=? ORDER BY at", (alarm,))

    # --- audit -----------------------------------------------------------------------------------------------

    def audit(self, user: str, role: str, action: str, detail: str = "") -> None:
        """Record what a person did (acknowledged, commented, cleared, started a run, uploaded a file)."""
        with self._tx() as db:
            db.execute("INSERT INTO audit VALUES (?, ?, ?, ?, ?)", (time.time(), user, role, action, detail))

    def audit_log(self, search: str = "", limit: int = 5000) -> pd.DataFrame:
        if search:
            return self._frame("SELECT * FROM audit WHERE user LIKE ? OR action LIKE ? OR detail LIKE ? "
                               f"ORDER BY at DESC LIMIT {int(limit)}", (f"%{search}%",) * 3)
        return self._frame(f"SELECT * FROM audit ORDER BY at DESC LIMIT {int(limit)}")
