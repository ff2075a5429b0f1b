"""Connections per endpoint (more when the stream limit binds, bounded,
closed when idle) and the per-endpoint transport metrics of a live client,
through ``client.metrics()`` and the Prometheus exposition."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing
from test_rpc_faults_support import HOST, Chain, fast_options
from test_rpc_support import rpc_client_config, rpc_server_config

import ghostwire.quic as quic
import ghostwire.rpc as rpc


def _echo() -> rpc.Service:
    svc = rpc.Service("echo")

    @svc.call
    async def say(ctx: rpc.Context, text: str) -> str:
        return text

    return svc


@asynccontextmanager
async def _serving(chain: Chain, **config: int) -> AsyncIterator[tuple[rpc.Server, str]]:
    server = rpc.Server([chain.service(), _echo()], config=rpc_server_config(**config))
    async with trio.open_nursery() as nursery:
        listener = await nursery.start(functools.partial(server.serve, 0, host=HOST))
        yield server, f"{HOST}:{listener.port}"
        nursery.cancel_scope.cancel()


# With max_streams_bidi=4 a connection runs 4 calls at once; the first one 2
# (rpc.describe used a stream, whose credit the server returns in a batch of
# two, and health.watch holds one): the calls that reach the server while 20
# are in flight, for each bound on connections per endpoint.
@pytest.mark.parametrize(("bound", "running"), [(4, 2 + 3 * 4), (2, 2 + 4), (1, 2)])
async def test_more_connections_when_the_stream_limit_binds(bound: int, running: int) -> None:
    chain = Chain()
    chain.release = trio.Event()  # every call waits in the server until released
    options = fast_options(max_connections_per_endpoint=bound, extra_connection_idle=0.1)
    results: list[int] = []
    with trio.fail_after(30):
        async with _serving(chain, max_streams_bidi=4) as (server, address):
            async with rpc.connect(address, config=rpc_client_config(), options=options) as client:

                async def one(n: int) -> None:
                    results.append(await client.call("chain.get", n))

                async with trio.open_nursery() as calls:
                    for n in range(20):
                        calls.start_soon(one, n)
                    while chain.calls["get"] < running:
                        await chain.arrived.park()
                    await trio.testing.wait_all_tasks_blocked()
                    endpoint = client.metrics().endpoints[address]
                    assert endpoint.connections == bound
                    assert server.metrics().connections == bound
                    assert chain.calls["get"] == running  # the rest wait for a stream
                    chain.release.set()
                # every call succeeded, and no more connections were ever opened
                assert sorted(results) == list(range(20))
                assert server.metrics().connections_total == bound
                # idle extra connections close; the first one stays
                while client.metrics().endpoints[address].connections > 1:
                    await client.pool.wait_for_change()
                assert client.states()[address] is rpc.ConnectivityState.READY
                assert await client.call("chain.get", 99) == 99
                extras_closed = server.metrics().connections
    assert extras_closed == 1


def test_a_bound_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        rpc.PoolOptions(max_connections_per_endpoint=0)


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    parser = pytest.importorskip("prometheus_client.parser")
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in parser.text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


async def test_endpoint_transport_metrics_of_a_live_client() -> None:
    pytest.importorskip("prometheus_client")
    from ghostwire.rpc.resilience.prometheus import exposition

    chain = Chain()
    with trio.fail_after(30):
        async with _serving(chain) as (_server, address):
            async with rpc.connect(address, config=rpc_client_config()) as client:
                await client.call("chain.get", 0)
                before = client.metrics().endpoints[address]
                text_before = exposition(client.metrics).decode()
                for _ in range(10):
                    await client.call("echo.say", "x" * 1000)
                after = client.metrics().endpoints[address]
                text_after = exposition(client.metrics).decode()
    assert before.rtt is not None and before.rtt > 0
    assert after.rtt is not None and after.rtt > 0
    # ten calls carrying 1000 bytes each went out, and their replies came back
    assert after.bytes_sent >= before.bytes_sent + 10 * 1000
    assert after.bytes_received >= before.bytes_received + 10 * 1000
    assert after.packets_lost >= 0 and after.connections == 1
    label = (("endpoint", address),)
    old, new = _samples(text_before), _samples(text_after)
    assert new[("ghostwire_rpc_endpoint_rtt_seconds", label)] == after.rtt
    assert new[("ghostwire_rpc_endpoint_sent_bytes_total", label)] == after.bytes_sent
    assert new[("ghostwire_rpc_endpoint_received_bytes_total", label)] == after.bytes_received
    assert (
        new[("ghostwire_rpc_endpoint_sent_bytes_total", label)]
        >= old[("ghostwire_rpc_endpoint_sent_bytes_total", label)] + 10 * 1000
    )
    assert new[("ghostwire_rpc_endpoint_lost_packets_total", label)] == after.packets_lost
    assert new[("ghostwire_rpc_endpoint_connections", label)] == 1


class _RefusedInAGroup:
    """A connection attempt whose refusal comes wrapped in an exception group
    (as when the attempt's deadline cancels the handshake at that moment)."""

    async def __aenter__(self) -> quic.Connection:
        raise ExceptionGroup("connect", [ConnectionRefusedError("nothing listens")])

    async def __aexit__(self, *exc_info: object) -> None:
        return None  # pragma: no cover


async def test_a_refusal_in_a_group_is_a_failed_attempt_not_a_crash() -> None:
    with trio.fail_after(30), pytest.raises(ConnectionRefusedError, match="nothing listens"):
        async with rpc.connect(
            f"{HOST}:9", connector=lambda address: _RefusedInAGroup(), options=fast_options()
        ):
            pass  # pragma: no cover


class _RefusedAsTheClientCloses:
    """An attempt still handshaking when the client closes, whose refusal
    arrives at that moment: it raises a group of its Cancelled and the refusal."""

    def __init__(self, started: trio.Event) -> None:
        self.started = started

    async def __aenter__(self) -> quic.Connection:
        self.started.set()
        try:
            await trio.sleep_forever()
        except trio.Cancelled as cancelled:
            refused = ConnectionRefusedError("nothing listens")
            raise BaseExceptionGroup("connect", [cancelled, refused]) from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def __aexit__(self, *exc_info: object) -> None:
        return None  # pragma: no cover


async def test_a_refusal_as_the_client_closes_is_not_raised_to_the_caller() -> None:
    started = trio.Event()
    with trio.fail_after(30):
        pool = rpc.Pool([f"{HOST}:9"], lambda address: _RefusedAsTheClientCloses(started), _no_rpc)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(pool.run)
            await started.wait()
            nursery.cancel_scope.cancel()  # the client closes: no ConnectionRefusedError
    assert started.is_set()


def _no_rpc(conn: quic.Connection) -> rpc.RpcConnection:
    raise AssertionError("never connected")  # pragma: no cover
