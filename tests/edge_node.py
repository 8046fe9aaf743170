"""A Sparkplug B edge node for the tests: pysparkplug's own EdgeNode (run by .venv-edge's Python, where pysparkplug
has the paho-mqtt 1.x it needs) with device filler-a, ten DDATA messages one second apart in the metrics' time from
BASE_MS (status 2 "jam" on the fifth, its recipe juice-10 from the sixth), then a clean disconnect: its death
certificate.

    .venv-edge/bin/python tests/edge_node.py PORT BASE_MS
"""

from __future__ import annotations

import sys
import time

import pysparkplug as spb


def metric(name: str, kind: spb.DataType, value: object, t: int) -> spb.Metric:
    return spb.Metric(timestamp=t, name=name, datatype=kind, value=value)


def main(port: int, t0: int) -> None:
    node = spb.EdgeNode("plant1", "edge-7", metrics=[])
    node.register(spb.Device("filler-a", metrics=[metric("Vib", spb.DataType.DOUBLE, 2.0, t0),
                                                  metric("Status", spb.DataType.INT32, 1, t0),
                                                  metric("Fault", spb.DataType.STRING, "", t0),
                                                  metric("Infeed", spb.DataType.UINT16, 0, t0),
                                                  metric("Recipe", spb.DataType.STRING, "still-05", t0)]))
    node.connect("127.0.0.1", port=port)
    time.sleep(1)
    for k in range(1, 11):
        t = t0 + 1000 * k
        node.update_device("filler-a", [metric("Vib", spb.DataType.DOUBLE, 2.0 + k / 10, t),
                                        metric("Fault", spb.DataType.STRING, "jam" if k == 5 else "", t),
                                        metric("Status", spb.DataType.INT32, 2 if k == 5 else 1, t),
                                        metric("Infeed", spb.DataType.UINT16, 3 * k, t),  # parts waiting
                                        metric("Recipe", spb.DataType.STRING, "juice-10" if k >= 6 else "still-05",
                                               t)])  # the filler changes over to juice at the sixth
        time.sleep(0.1)
    time.sleep(1)
    node.disconnect()
    time.sleep(0.5)


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
