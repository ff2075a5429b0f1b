"""Event channels, bidirectional streams, graceful shutdown and mutual TLS
over real loopback QUIC."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
import trio.testing
from cryptography.x509.oid import NameOID
from quic_pair import test_ca
from test_rpc_support import connected, rpc_client_config, rpc_server_config

import ghostwire.rpc as rpc
from ghostwire.quic.tls import TrustStore

Status = rpc.Status
EVENT_SIZE = 1000
TOTAL = 5000  # 5 MB of events: far more than the QUIC windows and buffers hold
BUFFER = 8


def feed_service(policy: rpc.Policy, produced: list[int], closed: trio.Event) -> rpc.Service:
    svc = rpc.Service("feed")

    @svc.events(policy=policy, buffer=BUFFER)
    async def blocks(ctx: rpc.Context, size: int) -> AsyncIterator[rpc.Event]:
        try:
            for height in range(TOTAL):
                produced.append(height)
                yield rpc.Event({"height": height, "pad": b"\x00" * size}, cursor=height)
        finally:
            closed.set()

    return svc


async def until_buffer_full(server: rpc.Server) -> None:
    """Wait, with trio's quiescence tool rather than sleeps, for the subscription's
    buffer to fill (the transport under it is then blocked by flow control)."""
    while server.statistics()["events_buffered"] < BUFFER:
        await trio.testing.wait_all_tasks_blocked(cushion=0.01)


async def test_slow_subscriber_backpressure_holds_the_producer() -> None:
    produced: list[int] = []
    closed = trio.Event()
    async with connected([feed_service("backpressure", produced, closed)]) as (server, client):
        with trio.fail_after(60):
            async with client.subscribe("feed.blocks", size=EVENT_SIZE) as events:
                first = await events.receive()
                await until_buffer_full(server)
                held_at = len(produced)
                assert held_at < TOTAL and not closed.is_set()  # the producer waits
                stats = server.statistics()
                assert stats["events_buffered"] == BUFFER and stats["events_dropped"] == 0
                heights = [first.cursor] + [event.cursor async for event in events]
        assert heights == list(range(TOTAL))  # nothing lost
        assert server.statistics()["events_buffered_peak"] <= BUFFER


async def test_slow_subscriber_drop_oldest_bounds_memory() -> None:
    produced: list[int] = []
    closed = trio.Event()
    async with connected([feed_service("drop_oldest", produced, closed)]) as (server, client):
        with trio.fail_after(60):
            async with client.subscribe("feed.blocks", size=EVENT_SIZE) as events:
                first = await events.receive()
                await closed.wait()  # the producer ran to the end without waiting
                stats = server.statistics()
                assert stats["events_buffered"] <= BUFFER and stats["events_dropped"] > 0
                heights = [first.cursor] + [event.cursor async for event in events]
                assert events.last_cursor == TOTAL - 1
        assert heights == sorted(heights) and heights[-1] == TOTAL - 1
        assert len(heights) < TOTAL  # the oldest were dropped
        assert server.statistics()["events_buffered_peak"] <= BUFFER


async def test_slow_subscriber_end_policy_ends_the_subscription() -> None:
    produced: list[int] = []
    closed = trio.Event()
    async with connected([feed_service("end", produced, closed)]) as (server, client):
        with trio.fail_after(60):
            async with client.subscribe("feed.blocks", size=EVENT_SIZE) as events:
                await events.receive()
                await closed.wait()  # the generator was closed when the buffer overflowed
                assert len(produced) < TOTAL
                received = 1
                with pytest.raises(rpc.RpcError) as info:
                    async for _ in events:
                        received += 1
                assert info.value.status is Status.RESOURCE_EXHAUSTED
        assert received < len(produced)
        assert server.statistics()["events_buffered_peak"] <= BUFFER


def chain_service(seen: list[Any]) -> rpc.Service:
    svc = rpc.Service("chain")

    @svc.events
    async def heads(ctx: rpc.Context, until: int) -> AsyncIterator[rpc.Event]:
        seen.append(ctx.resume_after)
        start = 0 if ctx.resume_after is None else ctx.resume_after + 1
        for height in range(start, until + 1):
            yield rpc.Event({"height": height}, cursor=height)

    @svc.events
    async def forever(ctx: rpc.Context) -> AsyncIterator[int]:
        seen.append("forever")
        try:
            yield 1
            await trio.sleep_forever()
        finally:
            seen.append("closed")

    @svc.stream
    async def doubler(ctx: rpc.Context, stream: rpc.BidiStream, factor: int = 2) -> None:
        total = 0
        async for message in stream:
            if message == "fail":
                raise rpc.RpcError(Status.ABORTED, "asked to fail", details=total)
            total += message
            await stream.send(message * factor)
        await stream.send({"total": total})

    @svc.stream
    async def hold(ctx: rpc.Context, stream: rpc.BidiStream) -> None:
        try:
            await stream.send("ready")
            await trio.sleep_forever()
        finally:
            seen.append("hold cancelled")

    return svc


async def test_resume_after_cursor() -> None:
    seen: list[Any] = []
    async with connected([chain_service(seen)]) as (_, client):
        with trio.fail_after(10):
            async with client.subscribe("chain.heads", until=9) as events:
                first = [event async for event in events][:4]
                last = events.last_cursor
            assert [e.data["height"] for e in first] == [0, 1, 2, 3] and last == 9
            async with client.subscribe("chain.heads", until=9, after=6) as events:
                rest = [event.cursor async for event in events]
            assert rest == [7, 8, 9]
            stub = client.service("chain")
            async with stub.heads.subscribe(until=3, after=2) as events:
                assert [event.data async for event in events] == [{"height": 3}]
        assert seen == [None, 6, 2]


async def test_leaving_a_subscription_closes_the_generator() -> None:
    seen: list[Any] = []
    async with connected([chain_service(seen)]) as (server, client):
        with trio.fail_after(10):
            async with client.subscribe("chain.forever") as events:
                assert (await events.receive()).data == 1
            while "closed" not in seen:
                await trio.testing.wait_all_tasks_blocked()
            assert server.statistics()["subscriptions"] == 0


async def test_bidirectional_stream() -> None:
    seen: list[Any] = []
    async with connected([chain_service(seen)]) as (_, client):
        with trio.fail_after(20):
            async with client.open_stream("chain.doubler", factor=3) as stream:
                received: list[Any] = []

                async def reader() -> None:
                    received.extend([message async for message in stream])

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(reader)
                    for i in range(200):
                        await stream.send(i)
                    await stream.send_eof()
            assert received == [i * 3 for i in range(200)] + [{"total": sum(range(200))}]

            async with client.service("chain").doubler.open_stream() as stream:
                await stream.send(5)
                assert await stream.receive() == 10
                await stream.send("fail")
                with pytest.raises(rpc.RpcError) as info:
                    await stream.receive()
                assert (info.value.status, info.value.details) == (Status.ABORTED, 5)


async def test_leaving_a_stream_early_cancels_the_handler() -> None:
    seen: list[Any] = []
    async with connected([chain_service(seen)]) as (_, client):
        with trio.fail_after(10):
            async with client.open_stream("chain.hold") as stream:
                assert await stream.receive() == "ready"
            while "hold cancelled" not in seen:
                await trio.testing.wait_all_tasks_blocked()


# -- graceful shutdown -------------------------------------------------------------------


def shutdown_service(release: trio.Event, started: list[str]) -> rpc.Service:
    svc = rpc.Service("work")

    @svc.call
    async def job(ctx: rpc.Context, n: int) -> int:
        started.append(f"job {n}")
        await release.wait()
        return n

    @svc.call
    async def stuck(ctx: rpc.Context) -> None:
        started.append("stuck")
        try:
            await trio.sleep_forever()
        finally:
            started.append("stuck cancelled")

    @svc.events
    async def ticks(ctx: rpc.Context) -> AsyncIterator[int]:
        started.append("ticks")
        yield 0
        await trio.sleep_forever()

    return svc


async def test_graceful_shutdown_with_calls_in_flight() -> None:
    release = trio.Event()
    started: list[str] = []
    server = rpc.Server([shutdown_service(release, started)], config=rpc_server_config())
    results: list[Any] = []
    with trio.fail_after(30):
        async with trio.open_nursery() as outer:
            listener = await outer.start(functools.partial(server.serve, 0, host="127.0.0.1"))
            address = f"127.0.0.1:{listener.port}"
            async with rpc.connect(address, config=rpc_client_config()) as client:

                async def job(n: int) -> None:
                    results.append(await client.call("work.job", n))

                async def subscriber() -> None:
                    # resume=False: this test checks how the server ends it
                    async with client.subscribe("work.ticks", resume=False) as events:
                        try:
                            async for event in events:
                                results.append(("tick", event.data))  # noqa: PERF401
                        except rpc.RpcError as exc:
                            results.append(("subscription", exc.status))

                async with trio.open_nursery() as nursery:
                    for n in range(3):
                        nursery.start_soon(job, n)
                    nursery.start_soon(subscriber)
                    while len(started) < 4 or ("tick", 0) not in results:
                        await trio.testing.wait_all_tasks_blocked()
                    nursery.start_soon(server.shutdown, 30.0)
                    await trio.testing.wait_all_tasks_blocked()
                    assert server.draining
                    with pytest.raises(rpc.RpcError) as info:
                        await client.call("work.job", 99)
                    assert info.value.status is Status.UNAVAILABLE
                    release.set()  # the calls in flight finish
        # serve() returned by itself: the outer nursery is done
    assert sorted(r for r in results if isinstance(r, int)) == [0, 1, 2]
    assert ("subscription", Status.UNAVAILABLE) in results
    assert "job 99" not in started


async def test_shutdown_grace_period_ends_stuck_calls() -> None:
    started: list[str] = []
    server = rpc.Server([shutdown_service(trio.Event(), started)], config=rpc_server_config())
    with trio.fail_after(30):
        async with trio.open_nursery() as outer:
            listener = await outer.start(functools.partial(server.serve, 0, host="127.0.0.1"))
            async with rpc.connect(
                f"127.0.0.1:{listener.port}", config=rpc_client_config()
            ) as client:
                async with trio.open_nursery() as nursery:

                    async def stuck() -> None:
                        with pytest.raises(rpc.RpcError) as info:
                            await client.call("work.stuck")
                        assert info.value.status is Status.UNAVAILABLE

                    nursery.start_soon(stuck)
                    while "stuck" not in started:
                        await trio.testing.wait_all_tasks_blocked()
                    await server.shutdown(grace=0.2)
    assert "stuck cancelled" in started


# -- mutual TLS and authorize ----------------------------------------------------------


async def test_authorize_by_client_certificate() -> None:
    svc = rpc.Service("vault")

    def only_alice(ctx: rpc.Context) -> bool:
        cert = ctx.peer.certificate
        if cert is None:
            return False
        names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return bool(names) and names[0].value == "alice"

    @svc.call(authorize=only_alice)
    async def unlock(ctx: rpc.Context) -> str:
        return "opened"

    ca = test_ca()
    config = rpc_server_config(client_trust_store=TrustStore([ca.certificate]))
    server = rpc.Server([svc], config=config)
    async with trio.open_nursery() as nursery:
        listener = await nursery.start(functools.partial(server.serve, 0, host="127.0.0.1"))
        address = f"127.0.0.1:{listener.port}"
        with trio.fail_after(20):
            for name, expected in (("alice", "opened"), ("mallory", None)):
                who = ca.issue([name], client=True, common_name=name)
                client_config = rpc_client_config(
                    certificate_chain=who.chain, private_key=who.private_key
                )
                async with rpc.connect(address, config=client_config) as client:
                    if expected is None:
                        with pytest.raises(rpc.RpcError) as info:
                            await client.call("vault.unlock")
                        assert info.value.status is Status.PERMISSION_DENIED
                    else:
                        assert await client.call("vault.unlock") == expected
            async with rpc.connect(address, config=rpc_client_config()) as anonymous:
                with pytest.raises(rpc.RpcError) as info:
                    await anonymous.call("vault.unlock")
                assert info.value.status is Status.PERMISSION_DENIED
        nursery.cancel_scope.cancel()


async def test_errors_in_the_subscribers_block_keep_their_type() -> None:
    seen: list[Any] = []
    async with connected([chain_service(seen)]) as (_, client):
        with trio.fail_after(10):
            with pytest.raises(trio.BrokenResourceError, match="mine"):
                async with client.subscribe("chain.forever") as events:
                    await events.receive()
                    raise trio.BrokenResourceError("mine")
            while "closed" not in seen:
                await trio.testing.wait_all_tasks_blocked()
