"""A server that is shutting down refuses new connections (CONNECTION_REFUSED,
RFC 9000 §20.1) while the calls in flight on its open connections finish."""

from __future__ import annotations

import functools

import pytest
import trio
import trio.testing
from test_rpc_faults_support import HOST, Chain, fast_options
from test_rpc_support import rpc_client_config, rpc_server_config

import ghostwire.quic as quic
import ghostwire.rpc as rpc
from ghostwire.quic.errors import TransportErrorCode


async def test_a_draining_server_refuses_new_connections() -> None:
    chain = Chain()
    chain.release = trio.Event()  # the call in flight waits until released
    server = rpc.Server([chain.service()], config=rpc_server_config())
    results: list[int] = []
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            listener = await nursery.start(functools.partial(server.serve, 0, host=HOST))
            address = f"{HOST}:{listener.port}"
            async with rpc.connect(address, config=rpc_client_config()) as client:

                async def in_flight() -> None:
                    results.append(await client.call("chain.get", 7))

                async with trio.open_nursery() as calls:
                    calls.start_soon(in_flight)
                    while chain.calls["get"] < 1:
                        await chain.arrived.park()
                    nursery.start_soon(server.shutdown, 10.0)
                    await trio.testing.wait_all_tasks_blocked()
                    assert server.draining
                    # A new QUIC connection is refused at once, without a handshake...
                    with pytest.raises(quic.HandshakeError) as info:
                        async with quic.connect(HOST, listener.port, rpc_client_config()):
                            pass  # pragma: no cover
                    assert info.value.by_peer
                    assert info.value.error_code == TransportErrorCode.CONNECTION_REFUSED
                    # ...and so is a new client (which would use another endpoint).
                    options = fast_options()
                    with pytest.raises(quic.QuicError):
                        async with rpc.connect(
                            address, config=rpc_client_config(), options=options
                        ):
                            pass  # pragma: no cover
                    assert server.metrics().connections_total == 1
                    chain.release.set()  # the call in flight on the open connection finishes
    assert results == [7]
