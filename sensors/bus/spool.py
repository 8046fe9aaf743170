"""A durable FIFO of MQTT messages on disk (SQLite): what is put is on disk when `put_many` returns, and leaves only
when `delete_through` says it was handled, so a crash in between loses nothing (it is handled again: every consumer
here is idempotent). An `Outbox` (the twin's publisher's, the connector's) spills into one when its broker lags or is
away; the ingest spools into one while the store is away, so it can acknowledge the broker instead of making it queue
(and maybe drop) the messages.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import deque
from pathlib import Path

Message = tuple[str, bytes, bool]  # topic, payload, retain
SpooledMessage = tuple[int, str, bytes, int]  # id (FIFO order), topic, payload, flag (the publisher's retain)


class Spool:
    """Messages in a SQLite file, oldest first; safe to share between threads, and between the processes of one
    ingest group (SQLite's own locking)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def _disk(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=30.0)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")  # on disk when the transaction returns: the ack follows it
            self._db.execute("CREATE TABLE IF NOT EXISTS m (id INTEGER PRIMARY KEY, topic TEXT, payload BLOB, "
                             "retain INTEGER)")
            self._db.commit()
        return self._db

    def open(self) -> None:
        """Create the spool file now, not when the store is first away and messages have already been received;
        OSError if it cannot be written there."""
        with self._lock:
            try:
                self._disk()
            except sqlite3.Error as e:  # SQLite says "unable to open database file" for a folder it cannot write
                raise OSError(f"{e}") from None

    def put_many(self, messages: list[tuple[str, bytes, int]], *, front: bool = False) -> None:
        """Append messages (topic, payload, flag) in order, durably; `front`: ahead of every message held."""
        if not messages:
            return
        with self._lock:
            db = self._disk()
            if front:
                first = db.execute("SELECT coalesce(min(id), 1) FROM m").fetchone()[0]
                db.executemany("INSERT INTO m (id, topic, payload, retain) VALUES (?, ?, ?, ?)",
                               [(first - len(messages) + i, t, p, f) for i, (t, p, f) in enumerate(messages)])
            else:
                db.executemany("INSERT INTO m (topic, payload, retain) VALUES (?, ?, ?)", messages)
            db.commit()

    def peek(self, n: int) -> list[SpooledMessage]:
        """The `n` oldest messages, left in place."""
        with self._lock:
            if not self._exists():
                return []
            rows = self._disk().execute("SELECT id, topic, payload, retain FROM m ORDER BY id LIMIT ?", (n,))
            return [(i, t, bytes(p), f) for i, t, p, f in rows.fetchall()]

    def delete_through(self, last_id: int) -> None:
        """Forget every message up to and including `last_id` (they were handled)."""
        with self._lock:
            self._disk().execute("DELETE FROM m WHERE id <= ?", (last_id,))
            self._disk().commit()

    def _exists(self) -> bool:
        return self._db is not None or self.path.exists()

    def __len__(self) -> int:
        with self._lock:
            return self._disk().execute("SELECT count(*) FROM m").fetchone()[0] if self._exists() else 0

    def __bool__(self) -> bool:
        """Whether any message waits, without counting them (a count reads the whole table; the ingest asks at every
        batch, and after a long outage millions may wait)."""
        with self._lock:
            return self._exists() and self._disk().execute("SELECT 1 FROM m LIMIT 1").fetchone() is not None

    def close(self) -> None:
        """Close the file, and remove it when nothing is left in it (one that holds messages stays for next time)."""
        with self._lock:
            if self._db is None:
                return
            empty = self._db.execute("SELECT count(*) FROM m").fetchone()[0] == 0
            self._db.close()
            self._db = None
            if empty:
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{self.path}{suffix}").unlink(missing_ok=True)


class Outbox:
    """A FIFO of messages bounded in memory; past `max_bytes` new messages spill to disk, in order. What a spill file
    already holds (an outbox closed with messages left) comes first."""

    def __init__(self, spill_path: Path, max_bytes: int = 64 << 20) -> None:
        self.max_bytes = max_bytes
        self._mem: deque[Message] = deque()
        self._bytes = 0
        self.path = spill_path
        self._disk = Spool(spill_path)
        self._spilled = len(self._disk)
        self._cv = threading.Condition()
        self.spilled_total = 0

    def open(self) -> None:
        """Create the spill file now, so that one that cannot be written fails before any message is taken
        (OSError)."""
        self._disk.open()

    def put_many(self, messages: list[Message]) -> None:
        with self._cv:
            spill = []
            for msg in messages:
                if self._spilled or spill or self._bytes + len(msg[1]) > self.max_bytes:
                    spill.append((msg[0], msg[1], int(msg[2])))
                else:
                    self._mem.append(msg)
                    self._bytes += len(msg[1])
            self._disk.put_many(spill)
            self._spilled += len(spill)
            self.spilled_total += len(spill)
            self._cv.notify_all()

    def put_front(self, messages: list[Message]) -> None:
        """Put messages back at the head of the queue (to be sent again first)."""
        with self._cv:
            for msg in reversed(messages):
                self._mem.appendleft(msg)
                self._bytes += len(msg[1])
            self._cv.notify_all()

    def peek(self, timeout: float) -> Message | None:
        """The oldest message (left in place), waiting up to `timeout` for one."""
        with self._cv:
            if not self._mem and self._spilled:
                self._refill()
            if not self._mem:
                self._cv.wait(timeout)
                if not self._mem and self._spilled:
                    self._refill()
            return self._mem[0] if self._mem else None

    def pop(self) -> None:
        with self._cv:
            msg = self._mem.popleft()
            self._bytes -= len(msg[1])
            self._cv.notify_all()

    def _refill(self) -> None:
        rows = self._disk.peek(5000)
        for _, topic, payload, retain in rows:
            self._mem.append((topic, payload, bool(retain)))
            self._bytes += len(payload)
        if rows:
            self._disk.delete_through(rows[-1][0])
        self._spilled -= len(rows)

    def __len__(self) -> int:
        with self._cv:
            return len(self._mem) + self._spilled

    def close(self) -> None:
        """Close the spill file, and remove it when nothing is left in it.

        Messages still waiting in memory are written to the spill file first, so stopping before the
        broker took everything leaves them on disk instead of losing them."""
        with self._cv:
            if self._mem:  # ahead of what spilled earlier: they are older
                self._disk.put_many([(t, p, int(r)) for t, p, r in self._mem], front=True)
                self._spilled += len(self._mem)
                self._mem.clear()
                self._bytes = 0
            self._disk.close()

    def wait_empty(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cv:
            while self._mem or self._spilled:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cv.wait(left)
            return True
