"""How busy this machine is, for every benchmark's report: figures mean little without it."""

from __future__ import annotations

import os


def load_line(when: str) -> str:
    """'N cores, load average 1m 5m 15m (when)'."""
    one, five, fifteen = os.getloadavg()
    return f"machine: {os.cpu_count()} cores, load average {one:.2f} {five:.2f} {fifteen:.2f} ({when})"
