"""An RPC server in its own process, for the tests that kill one with SIGKILL.

Usage: ``python tests/rpc_subprocess_server.py CERTFILE KEYFILE PORT``
serves the fault tests' chain service on 127.0.0.1:PORT (0: any free port)
and prints ``port N`` once it listens. It runs until killed.
"""

from __future__ import annotations

import functools
import sys

import trio
from test_rpc_faults_support import HOST, Chain

import ghostwire.quic as quic
import ghostwire.rpc as rpc


async def main(certfile: str, keyfile: str, port: int) -> None:
    config = quic.ServerConfig(alpn=[rpc.ALPN], certfile=certfile, keyfile=keyfile)
    server = rpc.Server([Chain().service()], config=config)
    async with trio.open_nursery() as nursery:
        listener = await nursery.start(functools.partial(server.serve, port, host=HOST))
        print(f"port {listener.port}", flush=True)


if __name__ == "__main__":
    trio.run(main, sys.argv[1], sys.argv[2], int(sys.argv[3]))
