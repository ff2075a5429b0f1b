"""Shared fixtures for the RPC tests: a running server and a connected client.

(A helper module: it defines no tests.)
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import trio
from quic_pair import server_identity, test_ca

import ghostwire.quic as quic
import ghostwire.rpc as rpc
from ghostwire.quic.tls import TrustStore


def rpc_server_config(**overrides: Any) -> quic.ServerConfig:
    identity = server_identity()
    options: dict[str, Any] = {
        "alpn": [rpc.ALPN],
        "certificate_chain": identity.chain,
        "private_key": identity.private_key,
        "max_streams_bidi": 1000,
    }
    options.update(overrides)
    return quic.ServerConfig(**options)


def rpc_client_config(**overrides: Any) -> quic.ClientConfig:
    options: dict[str, Any] = {
        "alpn": [rpc.ALPN],
        "trust_store": TrustStore([test_ca().certificate]),
    }
    options.update(overrides)
    return quic.ClientConfig(**options)


@asynccontextmanager
async def running(
    services: Sequence[rpc.Service],
    *,
    config: quic.ServerConfig | None = None,
    **server_options: Any,
) -> AsyncIterator[tuple[rpc.Server, rpc.RpcListener]]:
    """A server on 127.0.0.1 with an ephemeral port, stopped on exit."""
    server = rpc.Server(services, config=config or rpc_server_config(), **server_options)
    async with trio.open_nursery() as nursery:
        listener = await nursery.start(functools.partial(server.serve, 0, host="127.0.0.1"))
        yield server, listener
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def connected(
    services: Sequence[rpc.Service],
    *,
    options: rpc.PoolOptions | None = None,
    **server_options: Any,
) -> AsyncIterator[tuple[rpc.Server, rpc.Client]]:
    """A running server and a client connected to it (``options``: the client's)."""
    async with running(services, **server_options) as (server, listener):
        address = f"127.0.0.1:{listener.port}"
        async with rpc.connect(address, config=rpc_client_config(), options=options) as client:
            yield server, client
