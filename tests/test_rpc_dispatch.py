"""The transport-independent dispatcher, in memory: argument checks,
statuses, deadlines, cancellation, interceptors, authorize and the
event-buffer policies (no network; MockClock where time matters)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal

import pytest
import trio
import trio.testing

import ghostwire.rpc as rpc
from ghostwire.rpc.dispatch import INTERNAL_MESSAGE

Status = rpc.Status


def make_service() -> tuple[rpc.Service, list[str]]:
    ran: list[str] = []
    svc = rpc.Service("zvm")

    @svc.call
    async def get_balance(ctx: rpc.Context, address: bytes, scale: int = 1) -> int:
        ran.append("get_balance")
        return len(address) * scale

    @svc.call(idempotent=True)
    async def call_contract(
        ctx: rpc.Context, address: bytes, method: str, args: list[int], value: int = 0
    ) -> dict[str, Any]:
        ran.append("call_contract")
        return {"method": method, "sum": sum(args) + value}

    @svc.call
    async def typed(
        ctx: rpc.Context,
        ratio: float,
        flag: bool,
        maybe: str | None,
        mode: Literal["a", "b"],
        table: dict[str, int],
        anything: Any,
        **extra: Any,
    ) -> list[Any]:
        ran.append("typed")
        return [ratio, flag, maybe, mode, table, anything, extra]

    return svc, ran


async def unary(
    dispatcher: rpc.Dispatcher, name: str, *args: Any, ctx: rpc.Context | None = None, **kwargs: Any
) -> Any:
    return await dispatcher.unary(ctx or rpc.Context(name), dispatcher.resolve(name), args, kwargs)


async def test_arguments_positional_keyword_and_defaults() -> None:
    svc, _ = make_service()
    d = rpc.Dispatcher([svc])
    assert await unary(d, "zvm.get_balance", b"abc") == 3
    assert await unary(d, "zvm.get_balance", b"abc", scale=2) == 6
    assert await unary(d, "zvm.get_balance", address=b"ab", scale=3) == 6
    result = await unary(d, "zvm.call_contract", b"a", "transfer", [1, 2], value=2**100)
    assert result == {"method": "transfer", "sum": 3 + 2**100}
    assert d.resolve("zvm.call_contract").options.idempotent


@pytest.mark.parametrize(
    ("args", "kwargs", "named"),
    [
        ((), {}, "'address'"),  # missing
        ((b"a",), {"nope": 1}, "'nope'"),  # unknown
        ((5,), {}, "'address'"),  # wrong type
        ((b"a",), {"scale": True}, "'scale'"),  # bool is not int
        ((b"a",), {"scale": 1.5}, "'scale'"),
        ((b"a",), {"address": b"b"}, "'address'"),  # given twice
        ((b"a", 1, 2), {}, "positional"),
    ],
)
async def test_bad_arguments_are_invalid_argument_and_the_handler_never_runs(
    args: tuple[Any, ...], kwargs: dict[str, Any], named: str
) -> None:
    svc, ran = make_service()
    d = rpc.Dispatcher([svc])
    with pytest.raises(rpc.RpcError) as info:
        await unary(d, "zvm.get_balance", *args, **kwargs)
    assert info.value.status is Status.INVALID_ARGUMENT
    assert named in info.value.message
    assert ran == []


async def test_type_hints_are_checked() -> None:
    svc, ran = make_service()
    d = rpc.Dispatcher([svc])
    good: dict[str, Any] = {
        "ratio": 1,
        "flag": False,
        "maybe": None,
        "mode": "a",
        "table": {"x": 1},
        "anything": [b""],
    }
    assert (await unary(d, "zvm.typed", **good, more=1))[-1] == {"more": 1}
    for name, bad in [
        ("ratio", "1"),
        ("flag", 0),
        ("maybe", 3),
        ("mode", "c"),
        ("table", {"x": "1"}),
        ("table", {1: 1}),
    ]:
        with pytest.raises(rpc.RpcError) as info:
            await unary(d, "zvm.typed", **{**good, name: bad})
        assert info.value.status is Status.INVALID_ARGUMENT
        assert repr(name) in info.value.message
    with pytest.raises(rpc.RpcError) as info:
        await unary(d, "zvm.call_contract", b"a", "m", [1, "2"])
    assert "'args'" in info.value.message
    assert ran == ["typed"]


async def test_unknown_method_is_unimplemented() -> None:
    d = rpc.Dispatcher([make_service()[0]])
    for name in ("zvm.nope", "nope.get_balance", "zvm", ""):
        with pytest.raises(rpc.RpcError) as info:
            d.resolve(name)
        assert info.value.status is Status.UNIMPLEMENTED


async def test_handler_errors_map_to_statuses(caplog: pytest.LogCaptureFixture) -> None:
    svc = rpc.Service("s")

    @svc.call
    async def fail(ctx: rpc.Context, kind: str) -> None:
        if kind == "rpc":
            raise rpc.RpcError(Status.NOT_FOUND, "no such block", details={"height": 2**80})
        if kind == "group":
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_raise, rpc.RpcError(Status.ABORTED, "conflict"))
        raise KeyError("secret internals")

    d = rpc.Dispatcher([svc])
    with pytest.raises(rpc.RpcError) as info:
        await unary(d, "s.fail", "rpc")
    assert (info.value.status, info.value.details) == (Status.NOT_FOUND, {"height": 2**80})
    with pytest.raises(rpc.RpcError) as info:
        await unary(d, "s.fail", "group")
    assert info.value.status is Status.ABORTED
    with caplog.at_level(logging.ERROR, logger="ghostwire.rpc"):
        with pytest.raises(rpc.RpcError) as info:
            await unary(d, "s.fail", "other")
    assert info.value.status is Status.INTERNAL
    assert info.value.message == INTERNAL_MESSAGE and "secret" not in str(info.value)
    assert info.value.__cause__ is None
    assert "secret internals" in caplog.text and "KeyError" in caplog.text


async def _raise(exc: BaseException) -> None:
    raise exc


async def test_deadline_cancels_the_handler(autojump_clock: trio.testing.MockClock) -> None:
    cancelled = trio.Event()
    svc = rpc.Service("s")

    @svc.call
    async def slow(ctx: rpc.Context) -> None:
        try:
            await trio.sleep_forever()
        finally:
            cancelled.set()

    @svc.call(timeout=2.0)
    async def capped(ctx: rpc.Context) -> float:
        await trio.sleep(ctx.time_remaining() + 1)
        return 0.0

    d = rpc.Dispatcher([svc])
    ctx = rpc.Context.from_timeout("s.slow", 5.0)
    start = trio.current_time()
    with pytest.raises(rpc.RpcError) as info:
        await d.unary(ctx, d.resolve("s.slow"), [], {})
    assert info.value.status is Status.DEADLINE_EXCEEDED
    assert cancelled.is_set()
    assert trio.current_time() - start == pytest.approx(5.0)
    with pytest.raises(rpc.RpcError) as info:
        await unary(d, "s.capped")  # no deadline from the caller; the method caps it
    assert info.value.status is Status.DEADLINE_EXCEEDED
    assert trio.current_time() - start == pytest.approx(7.0)


@pytest.mark.parametrize(
    ("status", "expected"),
    [(Status.CANCELLED, Status.CANCELLED), (Status.UNAVAILABLE, Status.UNAVAILABLE)],
)
async def test_context_cancel_ends_the_call_with_its_status(
    status: Status, expected: Status
) -> None:
    started = trio.Event()
    cancelled = trio.Event()
    svc = rpc.Service("s")

    @svc.call
    async def wait(ctx: rpc.Context) -> None:
        started.set()
        try:
            await trio.sleep_forever()
        finally:
            cancelled.set()

    d = rpc.Dispatcher([svc])
    ctx = rpc.Context("s.wait")
    async with trio.open_nursery() as nursery:

        async def cancel_later() -> None:
            await started.wait()
            ctx.cancel(status, "went away")

        nursery.start_soon(cancel_later)
        with pytest.raises(rpc.RpcError) as info:
            await d.unary(ctx, d.resolve("s.wait"), [], {})
    assert info.value.status is expected and info.value.message == "went away"
    assert cancelled.is_set()


async def test_interceptors_wrap_every_outcome_and_can_reject() -> None:
    svc, ran = make_service()
    seen: list[tuple[str, str, object]] = []

    @asynccontextmanager
    async def record(ctx: rpc.Context) -> AsyncIterator[None]:
        try:
            yield
        except rpc.RpcError as exc:
            seen.append(("outer", ctx.method, exc.status))
            raise
        seen.append(("outer", ctx.method, "ok"))

    @asynccontextmanager
    async def require_token(ctx: rpc.Context) -> AsyncIterator[None]:
        if ctx.metadata.get("token") != "s3cret":
            raise rpc.RpcError(Status.UNAUTHENTICATED, "no token")
        yield

    d = rpc.Dispatcher([svc], interceptors=[record, require_token])
    with pytest.raises(rpc.RpcError) as info:
        await unary(d, "zvm.get_balance", b"a")
    assert info.value.status is Status.UNAUTHENTICATED
    assert ran == []
    ctx = rpc.Context("zvm.get_balance", metadata={"token": "s3cret"})
    assert await unary(d, "zvm.get_balance", b"ab", ctx=ctx) == 2
    assert seen == [
        ("outer", "zvm.get_balance", Status.UNAUTHENTICATED),
        ("outer", "zvm.get_balance", "ok"),
    ]


async def test_authorize_hook_sync_and_async() -> None:
    svc = rpc.Service("s")

    async def is_admin(ctx: rpc.Context) -> bool:
        await trio.lowlevel.checkpoint()
        return ctx.metadata.get("role") == "admin"

    @svc.call(authorize=is_admin)
    async def admin_only(ctx: rpc.Context) -> str:
        return "done"

    @svc.call(authorize=lambda ctx: False)
    async def nobody(ctx: rpc.Context) -> str:
        raise AssertionError("never runs")

    d = rpc.Dispatcher([svc])
    with pytest.raises(rpc.RpcError) as info:
        await unary(d, "s.admin_only")
    assert info.value.status is Status.PERMISSION_DENIED
    ctx = rpc.Context("s.admin_only", metadata={"role": "admin"})
    assert await unary(d, "s.admin_only", ctx=ctx) == "done"
    with pytest.raises(rpc.RpcError) as info:
        await unary(d, "s.nobody")
    assert info.value.status is Status.PERMISSION_DENIED


async def test_kind_mismatch_is_failed_precondition() -> None:
    svc = rpc.Service("s")

    @svc.events
    async def ticks(ctx: rpc.Context) -> AsyncIterator[int]:
        yield 1

    d = rpc.Dispatcher([svc])
    with pytest.raises(rpc.RpcError) as info:
        await unary(d, "s.ticks")
    assert info.value.status is Status.FAILED_PRECONDITION
    assert "subscribe" in info.value.message


def test_registration_errors() -> None:
    svc = rpc.Service("s")
    with pytest.raises(TypeError):
        svc.call(lambda ctx: None)
    with pytest.raises(TypeError):

        @svc.events
        async def not_a_generator(ctx: rpc.Context) -> None: ...

    with pytest.raises(ValueError, match="policy"):

        @svc.events(policy="forever")  # type: ignore[call-overload, untyped-decorator]
        async def bad_policy(ctx: rpc.Context) -> AsyncIterator[int]:
            yield 1

    @svc.call
    async def once(ctx: rpc.Context) -> None: ...

    with pytest.raises(ValueError, match="already"):
        svc.call(name="once")(once)
    with pytest.raises(ValueError):
        rpc.Service("a.b")
    with pytest.raises(ValueError, match="twice"):
        rpc.Dispatcher([svc, svc])


# -- event channels under a slow subscriber --------------------------------------


def channel(policy: rpc.Policy, total: int, produced: list[int], closed: trio.Event) -> rpc.Service:
    svc = rpc.Service("feed")

    @svc.events(policy=policy, buffer=8)
    async def numbers(ctx: rpc.Context) -> AsyncIterator[rpc.Event]:
        try:
            for i in range(total):
                produced.append(i)
                yield rpc.Event({"n": i}, cursor=i)
        finally:
            closed.set()

    return svc


async def test_backpressure_holds_the_producer() -> None:
    produced: list[int] = []
    closed = trio.Event()
    d = rpc.Dispatcher([channel("backpressure", 1000, produced, closed)])
    release = trio.Event()
    received: list[rpc.Event] = []

    async def slow_send(event: rpc.Event) -> None:
        await release.wait()
        received.append(event)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            d.events, rpc.Context("feed.numbers"), d.resolve("feed.numbers"), [], {}, slow_send
        )
        await trio.testing.wait_all_tasks_blocked()
        stats = d.statistics()
        # one event taken by the stuck sender, 8 buffered, one more waiting at the yield
        assert (stats.events_buffered, stats.subscriptions) == (8, 1)
        assert len(produced) == 10
        release.set()
    assert [e.cursor for e in received] == list(range(1000))
    assert d.statistics().events_buffered_peak == 8


async def test_drop_oldest_keeps_the_newest() -> None:
    produced: list[int] = []
    closed = trio.Event()
    d = rpc.Dispatcher([channel("drop_oldest", 1000, produced, closed)])
    release = trio.Event()
    received: list[rpc.Event] = []

    async def slow_send(event: rpc.Event) -> None:
        await release.wait()
        received.append(event)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            d.events, rpc.Context("feed.numbers"), d.resolve("feed.numbers"), [], {}, slow_send
        )
        await closed.wait()  # the producer ran to the end without waiting
        stats = d.statistics()
        assert stats.events_buffered == 8 and stats.events_dropped == 1000 - 1 - 8
        release.set()
    assert [e.cursor for e in received] == [0, *range(992, 1000)]
    assert d.statistics().events_buffered_peak == 8


async def test_end_policy_ends_the_subscription() -> None:
    produced: list[int] = []
    closed = trio.Event()
    d = rpc.Dispatcher([channel("end", 1000, produced, closed)])
    release = trio.Event()

    async def slow_send(event: rpc.Event) -> None:
        await release.wait()

    async def release_when_closed() -> None:
        await closed.wait()
        release.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(release_when_closed)
        with pytest.raises(rpc.RpcError) as info:
            await d.events(
                rpc.Context("feed.numbers"), d.resolve("feed.numbers"), [], {}, slow_send
            )
    assert info.value.status is Status.RESOURCE_EXHAUSTED
    assert len(produced) == 10  # one sent, eight buffered, the ninth overflowed
    assert d.statistics().events_buffered_peak == 8


async def test_event_channel_errors_and_plain_values(caplog: pytest.LogCaptureFixture) -> None:
    svc = rpc.Service("s")

    @svc.events
    async def values(ctx: rpc.Context, fail: bool) -> AsyncIterator[Any]:
        assert ctx.resume_after == 41
        yield 42
        if fail:
            raise RuntimeError("hidden")

    d = rpc.Dispatcher([svc])
    got: list[rpc.Event] = []

    async def send(event: rpc.Event) -> None:
        got.append(event)

    ctx = rpc.Context("s.values", resume_after=41)
    await d.events(ctx, d.resolve("s.values"), [False], {}, send)
    assert got == [rpc.Event(42, None)]
    with caplog.at_level(logging.ERROR, logger="ghostwire.rpc"):
        with pytest.raises(rpc.RpcError) as info:
            await d.events(
                rpc.Context("s.values", resume_after=41), d.resolve("s.values"), [True], {}, send
            )
    assert info.value.status is Status.INTERNAL and "hidden" not in info.value.message
    assert "hidden" in caplog.text
