"""The line's state now, for a what-if run (`twin run --from`, `twin whatif`): read from a store's state records (each
machine's state, how long it has been in it, the fault mode of a stop, and each fault mode's age since its last
repair or maintenance) or from the retained messages on the line's broker (states, buffer levels, and the
forecasters' RUL of active alerts). Pure reading: what is not there is left out and said so."""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid
from typing import Any

import orjson
import pandas as pd

from sensors.bus.broker import BrokerURL, connect, make_client
from sensors.bus.payloads import LineTopics, ParseError, clock_time, parse, parse_alert
from sensors.store.base import Store, StoreError, part_times
from twin.fit import state_at
from twin.scenario import LineNow, MachineNow, ReleaseNow, Scenario


class SnapshotError(ValueError):
    """Nothing to continue from: the message says what was looked for where."""


def _names(names: Any) -> str:
    """At most six names, sorted, for a message."""
    shown = sorted(map(str, names))
    return ", ".join(shown[:6]) + (", ..." if len(shown) > 6 else "")


def from_store(db: Store, sc: Scenario, source: str, at: dt.datetime | None = None, run: str | None = None,
               replication: int = 0) -> LineNow:
    """The line's state at `at` (default: its latest state record) from the store's state records of `run`
    (default: the run of this line's machines with the latest record: a plant's store may hold several lines)."""
    states = db.states(run)
    if states.empty:
        raise SnapshotError(f"{source}: no machine state records{f' for run {run!r}' if run else ''}; a what-if "
                            "needs a store a run or `twin connect` wrote states into")
    known = {m for st in sc.stations for m in st.machine_names}
    ours = states[states.machine.astype(str).isin(known)]
    if ours.empty:  # another line's run was continued as if it were this one: every machine started new, silently
        latest = str(states.loc[states.ts.idxmax(), "run"])
        what = f"run {run!r}" if run else f"its latest run {latest!r}"
        raise SnapshotError(f"{source}: no state records of {sc.line.name}'s machines ({_names(known)}); {what} holds "
                            f"other machines ({_names(states[states.run == latest].machine.unique())}). Give the store "
                            "of this line's runs, or the scenario of the line that store holds")
    if run is None:
        run = str(ours.loc[ours.ts.idxmax(), "run"])
        states = states[states.run == run]
    states = states[states.replication == replication]
    newest = db.levels(run, replication=replication, last=True)  # each buffer's last level, not all of them
    end = _data_end(db, run, replication, states, newest)
    stamp = pd.Timestamp(at.replace(tzinfo=None)) if at is not None else end
    if stamp > end:  # every machine would sit in its last state for the gap, and every wear grow through it
        raise SnapshotError(f"{source}: {stamp} is after the last record of run {run!r} ({end}); the state there is "
                            "not known: ask for a time at or before it, or leave the time out to continue from the "
                            "last record")
    states = states[states.ts <= stamp]  # `state_at` sorts them
    if states.empty:
        raise SnapshotError(f"{source}: run {run!r} has no state record before {stamp}")
    levels = newest if stamp >= end else db.levels(run, replication=replication, end=stamp + pd.Timedelta(1, "us"),
                                                     last=True)
    buffers = dict(zip(levels.station.astype(str), levels["level"].astype(int))) if len(levels) else None
    now = state_at(states.rename(columns={"ts": "timestamp"}), sc, stamp, f"{source} (run {run}, state records)",
                   buffers)
    return _set_up(db, sc, now, run, replication, stamp) if sc.products else now


def _set_up(db: Store, sc: Scenario, now: LineNow, run: str, replication: int, stamp: pd.Timestamp) -> LineNow:
    """A mixed line's state with what its machines are set up for (the store's product records: each machine's last
    by `stamp`), and its release plan in the campaign of the product its entry machines are on, with the parts they
    counted since they changed to it (their good_parts counters; none counted without them)."""
    told = db.products(run, replication=replication, end=stamp + pd.Timedelta(1, "us"), last=True)
    told = told[told.machine.astype(str).isin(now.machines)]
    if told.empty:
        return now
    product = dict(zip(told.machine.astype(str), told["product"].astype(str)))
    machines = {m: v.model_copy(update={"product": product.get(m)}) for m, v in now.machines.items()}
    entry = told[told.machine.isin([m for i in sc.entries() for m in sc.stations[i].machine_names])]
    if not sc.release or entry.empty:
        return now.model_copy(update={"machines": machines})
    latest = entry.loc[entry.ts.idxmax()]  # the entry machine that changed last: the line's campaign now
    counted = db.query(end=stamp + pd.Timedelta(1, "us"), machines=list(entry.machine.astype(str)),
                       sensors=["good_parts"], run=run, replications=[replication])
    made = part_times(counted) if len(counted) else counted
    since = int((made.ts > latest.ts).sum()) if len(made) else 0
    return now.model_copy(update={"machines": machines, "release": ReleaseNow(
        product=str(latest["product"]), made=since, counted=len(counted) > 0)})


def _data_end(db: Store, run: str, replication: int, states: pd.DataFrame, levels: pd.DataFrame) -> pd.Timestamp:
    """The time of the run's last record of any kind: machines stay in their last state between state records, so
    the line's state is known up to its newest reading or buffer level, not only up to its last change of state."""
    ends = [states.ts.max()]
    if len(levels):
        ends.append(levels.ts.max())
    try:
        latest = db.latest(run=run)
    except StoreError:  # a store that cannot answer this (a line-protocol server without Flux): the state records
        latest = None
    if latest is not None and len(latest := latest[latest.replication == replication]):
        ends.append(pd.Timestamp(latest.ts.max()).tz_localize(None))
    return max(pd.Timestamp(t) for t in ends)


def from_broker(url: BrokerURL, sc: Scenario, wait: float = 3.0) -> LineNow:
    """The line's state from the retained messages on its broker: each machine's last state change, the buffers'
    levels, and the RUL of each active alert; taken at the newest of their times."""
    topics = LineTopics(sc.line.site, sc.line.area, sc.line.name)
    got: dict[str, bytes] = {}
    lock = threading.Lock()

    def on_message(c: Any, u: Any, msg: Any) -> None:
        if msg.retain:
            with lock:
                got[msg.topic] = bytes(msg.payload)

    client = make_client(url, f"linetwin-snapshot-{uuid.uuid4().hex[:8]}")
    client.on_message = on_message
    connect(client, url)
    client.subscribe([(f"{topics.prefix}/+/+/state", 1), (f"{topics.prefix}/+/+/alerts", 1), (topics.buffers, 1)])
    time.sleep(wait)  # retained messages come at once; the wait covers a busy broker
    client.loop_stop()
    client.disconnect()
    last: dict[str, tuple[str, int, str]] = {}
    rul: dict[str, dict[str, float]] = {}
    buffers, stamps = None, []
    for topic, payload in got.items():
        try:
            if topic == topics.buffers:
                doc = orjson.loads(payload)
                buffers = {str(k): int(v) for k, v in doc.get("levels", {}).items()}
                stamps.append(int(doc["ts"]))
            elif topic.endswith("/alerts"):
                a = parse_alert(payload)
                if a["state"] != "cleared" and isinstance(a["rul"].get("estimate_s"), int | float):
                    rul.setdefault(a["machine"], {})[str(a.get("fault_mode", ""))] = float(a["rul"]["estimate_s"])
            else:
                m = parse(topic, payload)
                state, ts, reason = m.changes[-1]  # type: ignore[union-attr]
                last[m.machine] = (state, ts, reason)
                stamps.append(ts)
        except (ParseError, ValueError, KeyError, TypeError, orjson.JSONDecodeError):
            continue  # a malformed retained message: not part of the state
    if not last:
        raise SnapshotError(f"{url}: no retained machine states under {topics.prefix}/; is the line running and "
                            "publishing there (a twin run, or `twin connect`)?")
    at = max(stamps)
    machines = {name: MachineNow(state=state, since=max(0.0, (at - ts) / 1000), mode=reason if state == "down" else "",
                                 rul=rul.get(name, {}))
                for name, (state, ts, reason) in last.items()}
    taken = clock_time(at)
    return LineNow(taken=taken, source=f"{url} (retained messages)", machines=machines, buffers=buffers)
