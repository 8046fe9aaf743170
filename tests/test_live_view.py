"""The live view's state from MQTT, without a broker: the KPI tiles' trend is over an hour of line time."""

from __future__ import annotations

from dashboard.data import KPI_TREND_KEEP, LiveState


def test_the_tiles_trend_is_over_the_last_hour_of_line_time() -> None:
    live = LiveState()
    assert live.trend_reference() == ({}, 0.0)  # nothing heard yet: no change shown
    live.record_kpis({"oee": 0.50}, 0.0)
    assert live.trend_reference() == ({}, 0.0)  # one update: nothing to compare with
    for t in range(12, 30 * 60 + 1, 12):  # KPI messages every 12 s of line time, half an hour
        live.record_kpis({"oee": 0.50 + t / 36_000}, float(t))
    kpis, since = live.trend_reference()
    assert since == 0.0 and kpis == {"oee": 0.50}  # younger than an hour: since the start
    for t in range(30 * 60 + 12, 3 * 3600 + 1, 12):
        live.record_kpis({"oee": 0.50 + t / 36_000}, float(t))
    kpis, since = live.trend_reference()
    assert 2 * 3600 - 60 <= since <= 2 * 3600 and kpis["oee"] == 0.50 + since / 36_000  # an hour before the latest
    assert live.kpis == {"oee": 0.50 + 3 * 3600 / 36_000} and live.kpis_at == 3 * 3600
    assert len(live.kpi_history) <= 3 * 60 + 1  # one a minute, not one per message
    for t in range(3 * 3600, 3 * 3600 + 2 * 86400, 60):
        live.record_kpis({"oee": 0.6}, float(t))
    assert len(live.kpi_history) == KPI_TREND_KEEP  # bounded: a day of them
    live.follow("another-run", 0)  # a new run starts from nothing
    assert live.kpi_history == [] and live.trend_reference() == ({}, live.kpis_at)
