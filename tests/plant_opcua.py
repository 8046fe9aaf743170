"""'The plant' for the OPC UA tests: an asyncua server on 127.0.0.1 whose press follows a script, one step every
0.25 s from step K: vibration = K / 10 (source time BASE + K s), temperature 40 + K / 100, status 2 ("jam") on every
tenth step and 1 otherwise, the infeed counter (parts waiting in front of the press) K mod 7, and on every fifteenth
step a vibration of bad quality (BadSensorFailure). Each write is
logged as a line `K ts_ms value quality` so the test knows what the plant sent.

    python tests/plant_opcua.py PORT LOG BASE_MS FIRST_STEP [CERT_DIR]

With CERT_DIR (server.der, server.pem in it) the server offers Basic256Sha256 SignAndEncrypt only.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sys

from asyncua import Server, ua


async def main(port: int, log: str, base_ms: int, k: int, certs: str | None = None) -> None:
    server = Server()
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/plant")
    if certs:
        await server.load_certificate(f"{certs}/server.der")
        await server.load_private_key(f"{certs}/server.pem")
        server.set_security_policy([ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt])
    else:
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    idx = await server.register_namespace("urn:plant:hamburg")  # ns=2
    press = await server.nodes.objects.add_object(ua.NodeId("Press1", idx), ua.QualifiedName("Press1", idx))
    vib = await press.add_variable(ua.NodeId("Press1.Vibration", idx), ua.QualifiedName("Vibration", idx), 0.0)
    temp = await press.add_variable(ua.NodeId("Press1.Temperature", idx), ua.QualifiedName("Temperature", idx), 0.0)
    status = await press.add_variable(ua.NodeId("Press1.Status", idx), ua.QualifiedName("Status", idx), 1,
                                      ua.VariantType.Int32)
    fault = await press.add_variable(ua.NodeId("Press1.Fault", idx), ua.QualifiedName("Fault", idx), "")
    infeed = await press.add_variable(ua.NodeId("Press1.Infeed", idx), ua.QualifiedName("Infeed", idx), 0,
                                      ua.VariantType.UInt16)  # parts waiting in front of the press: K mod 7
    recipe = await press.add_variable(ua.NodeId("Press1.Recipe", idx), ua.QualifiedName("Recipe", idx), 4711,
                                      ua.VariantType.Int32)  # the die set's article: 4711, from K 10 on 4713, ...
    async with server:
        with open(log, "a", buffering=1) as out:
            while True:
                stamp = dt.datetime.fromtimestamp((base_ms + 1000 * k) / 1000, dt.UTC)
                bad = k % 15 == 7
                code = ua.StatusCode(ua.StatusCodes.BadSensorFailure if bad else ua.StatusCodes.Good)
                await server.write_attribute_value(vib.nodeid, ua.DataValue(
                    ua.Variant(k / 10, ua.VariantType.Double), StatusCode=code, SourceTimestamp=stamp))
                await server.write_attribute_value(temp.nodeid, ua.DataValue(
                    ua.Variant(40 + k / 100, ua.VariantType.Double), SourceTimestamp=stamp))
                jam = k % 10 == 0
                await server.write_attribute_value(fault.nodeid, ua.DataValue(
                    ua.Variant("jam" if jam else "", ua.VariantType.String), SourceTimestamp=stamp))
                await server.write_attribute_value(status.nodeid, ua.DataValue(
                    ua.Variant(2 if jam else 1, ua.VariantType.Int32), SourceTimestamp=stamp))
                await server.write_attribute_value(infeed.nodeid, ua.DataValue(
                    ua.Variant(k % 7, ua.VariantType.UInt16), SourceTimestamp=stamp))
                await server.write_attribute_value(recipe.nodeid, ua.DataValue(
                    ua.Variant(4711 if k // 10 % 2 == 0 else 4713, ua.VariantType.Int32), SourceTimestamp=stamp))
                out.write(f"{k} {base_ms + 1000 * k} {k / 10} {'bad' if bad else 'good'}\n")
                k += 1
                await asyncio.sleep(0.25)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4]),
                     sys.argv[5] if len(sys.argv) > 5 else None))
