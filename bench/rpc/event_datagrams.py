"""Datagrams and CPU per event of one subscription, server and client in
one process over loopback (load-independent counts, unlike events/s)::

    python -m bench.rpc.event_datagrams [COUNT]

Prints the datagrams the server sent per event (its 100-byte events should
share packets: about ten fit one), the client's datagrams (acknowledgements)
per event, and the process CPU per event (both sides together).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import trio

import ghostwire.quic as quic
import ghostwire.rpc as rpc

from ..common import CertFiles
from .common import HOST, SERVER_NAME
from .gw_stack import bench


async def measure(certs: CertFiles, count: int) -> str:
    config = quic.ServerConfig(certfile=certs.certfile, keyfile=certs.keyfile)
    server = rpc.Server([bench], config=config)
    async with trio.open_nursery() as nursery:
        listener = await nursery.start(server.serve, 0)
        client_config = quic.ClientConfig(cafile=certs.cafile, server_name=SERVER_NAME)
        async with rpc.connect(f"{HOST}:{listener.port}", config=client_config) as client:
            async with client.subscribe("bench.events", count=10) as warm:
                async for _ in warm:
                    pass
            stats = client.connection.connection.core.stats
            received, sent = stats.packets_received, stats.packets_sent
            cpu = time.process_time()
            events = 0
            async with client.subscribe("bench.events", count=count) as subscription:
                async for _ in subscription:
                    events += 1
            cpu = time.process_time() - cpu
            received = stats.packets_received - received
            sent = stats.packets_sent - sent
        nursery.cancel_scope.cancel()
    return (
        f"{events} events: server datagrams per event {received / events:.3f}, "
        f"client datagrams per event {sent / events:.3f}, "
        f"CPU per event (both sides) {cpu / events * 1e6:.1f} us"
    )


def main(argv: list[str]) -> None:
    count = int(argv[0]) if argv else 50_000
    with tempfile.TemporaryDirectory() as tmp:
        certs = CertFiles.create(Path(tmp))
        print(trio.run(measure, certs, count))


if __name__ == "__main__":
    main(sys.argv[1:])
