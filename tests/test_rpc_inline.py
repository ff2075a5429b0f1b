"""Calls run inline (ghostwire/rpc/server.py ``Server._take_call``,
``Dispatcher.unary_now``): a whole request to a handler that cannot wait is
answered as its stream opens, without a task. Each case here calls a
handler that runs inline and its twin that runs in a task (the same code
with an ``await`` it does not take), and expects the same results, errors,
statuses, interceptor calls, deadlines and metrics."""

from __future__ import annotations

import contextvars
import logging
import math
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing
from test_rpc_support import connected

import ghostwire.rpc as rpc
from ghostwire.rpc.context import Context
from ghostwire.rpc.dispatch import INTERNAL_MESSAGE, Dispatcher
from ghostwire.rpc.status import RpcError, Status
from ghostwire.rpc.transport import FrameReader

svc = rpc.Service("inl")
request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")


class _Unencodable:
    pass


def _outcome(
    ctx: rpc.Context, body: Any, fail: str = "", extra: int = 0
) -> Any:  # shared by both twins
    if fail == "rpc":
        raise rpc.RpcError(Status.NOT_FOUND, "no such thing", details={"body": body})
    if fail == "bug":
        raise ValueError("a bug the caller must not see")
    if fail == "unencodable":
        return _Unencodable()
    if fail == "contextvar":  # what an earlier call set must not show
        seen = request_id.get()
        request_id.set(str(body))
        return seen
    if fail == "deadline":  # the deadline, and the cancel scope's that carries it
        scope = trio.current_effective_deadline()
        return [ctx.deadline is not None, scope == (ctx.deadline or math.inf)]
    return [body, extra]


@svc.call
async def now(ctx: rpc.Context, body: Any, fail: str = "", extra: int = 0) -> Any:
    return _outcome(ctx, body, fail, extra)


@svc.call
async def task(
    ctx: rpc.Context, body: Any, fail: str = "", extra: int = 0, wait: bool = False
) -> Any:
    if wait:
        await trio.lowlevel.checkpoint()
    return _outcome(ctx, body, fail, extra)


@svc.call
async def suspends(ctx: rpc.Context, body: Any) -> Any:
    await trio.lowlevel.checkpoint()
    return body


@svc.call(timeout=60.0)
async def capped_now(ctx: rpc.Context) -> Any:
    return [ctx.deadline is not None, ctx.time_remaining() <= 60.0]


@svc.call(timeout=60.0)
async def capped_task(ctx: rpc.Context, wait: bool = False) -> Any:
    if wait:
        await trio.lowlevel.checkpoint()
    return [ctx.deadline is not None, ctx.time_remaining() <= 60.0]


CASES: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
    ((b"payload",), {}),
    (({"a": [1, 2]},), {"extra": 7}),
    ((b"x",), {"fail": "rpc"}),
    ((b"x",), {"fail": "bug"}),
    ((b"x",), {"fail": "unencodable"}),
    ((), {}),  # a missing argument: INVALID_ARGUMENT, the handler does not run
    ((b"x",), {"nope": 1}),  # an unknown one
]


async def _result(client: rpc.Client, method: str, *args: Any, **kwargs: Any) -> Any:
    """What the caller sees: the result, or the error's status, message and details."""
    try:
        return ("ok", await client.call(method, *args, **kwargs))
    except rpc.RpcError as exc:
        return ("error", exc.status, exc.message, exc.details)


class _TaskCount(trio.abc.Instrument):
    """The server's per-call tasks spawned while installed."""

    def __init__(self) -> None:
        self.tasks = 0

    def task_spawned(self, task: trio.lowlevel.Task) -> None:
        if task.name.endswith("serve_call"):
            self.tasks += 1


@asynccontextmanager
async def _counting_tasks() -> AsyncIterator[_TaskCount]:
    count = _TaskCount()
    trio.lowlevel.add_instrument(count)
    try:
        yield count
    finally:
        trio.lowlevel.remove_instrument(count)


def test_which_methods_run_inline() -> None:
    dispatcher = Dispatcher([svc])
    inline = {name for name, m in dispatcher.methods.items() if dispatcher.runs_inline(m)}
    assert inline == {"inl.now", "inl.capped_now"}
    # Interceptors may wait: nothing runs inline under them.
    intercepted = Dispatcher([svc], interceptors=[_recording([])])
    assert not any(intercepted.runs_inline(m) for m in intercepted.methods.values())


async def test_inline_and_task_calls_answer_alike(caplog: pytest.LogCaptureFixture) -> None:
    async with connected([svc]) as (server, client):
        await client.call("inl.now", b"warm-up")  # connected; rpc.describe answered
        await client.call("inl.task", b"warm-up")
        await trio.testing.wait_all_tasks_blocked()  # the supervisor's own calls too
        caplog.clear()
        with caplog.at_level(logging.ERROR, logger="ghostwire.rpc"):
            async with _counting_tasks() as count:
                inline = [await _result(client, "inl.now", *a, **k) for a, k in CASES]
            assert count.tasks == 0
            logged_inline = [r.getMessage() for r in caplog.records]
            caplog.clear()
            async with _counting_tasks() as count:
                tasked = [await _result(client, "inl.task", *a, **k) for a, k in CASES]
            assert count.tasks == len(CASES)
            logged_task = [r.getMessage() for r in caplog.records]
        metrics = server.metrics().methods
    assert inline == tasked
    assert inline[0] == ("ok", [b"payload", 0])
    assert inline[2] == ("error", Status.NOT_FOUND, "no such thing", {"body": b"x"})
    assert inline[3] == ("error", Status.INTERNAL, INTERNAL_MESSAGE, None)
    assert inline[4][:2] == ("error", Status.INTERNAL)
    assert inline[5][1] is Status.INVALID_ARGUMENT
    # The bug and the unencodable result are logged the same way (method aside).
    assert [m.replace("inl.now", "M") for m in logged_inline] == [
        m.replace("inl.task", "M") for m in logged_task
    ]
    assert len(logged_inline) == 2
    now, task = metrics["inl.now"], metrics["inl.task"]
    assert (now.calls, now.in_flight, now.errors) == (task.calls, task.in_flight, task.errors)
    assert now.latency.count == task.latency.count == len(CASES) + 1
    assert server.dispatcher.statistics().calls_in_flight == 0


async def test_deadlines_are_seen_alike() -> None:
    async with connected([svc]) as (_, client):
        for timeout in (None, 30.0):
            now = await client.call("inl.now", b"", fail="deadline", timeout=timeout)
            task = await client.call("inl.task", b"", fail="deadline", timeout=timeout)
            assert now == task == [timeout is not None, True]
        # The method's timeout= caps the caller's: both see the cap.
        assert await client.call("inl.capped_now") == [True, True]
        assert await client.call("inl.capped_task") == [True, True]


async def test_context_variables_do_not_outlive_a_call() -> None:
    async with connected([svc]) as (_, client):
        for method in ("inl.now", "inl.task", "inl.now"):
            assert await client.call(method, 1, fail="contextvar") == ""
            assert await client.call(method, 2, fail="contextvar") == ""
    assert request_id.get() == ""


async def test_handlers_that_suspend_still_run_in_tasks() -> None:
    async with connected([svc]) as (_, client):
        await client.call("inl.now", b"warm-up")
        await trio.testing.wait_all_tasks_blocked()  # the supervisor's own calls too
        async with _counting_tasks() as count:
            assert await client.call("inl.suspends", b"a") == b"a"
            assert await client.call("inl.task", b"b", wait=True) == [b"b", 0]
            assert await client.call("inl.capped_task", wait=True) == [True, True]
        assert count.tasks == 3


async def test_unknown_methods_and_rate_limits_are_refused_inline() -> None:
    limits = rpc.Limits(max_calls_per_second=0.001, burst=2)  # admitted before resolved
    async with connected([svc], limits=limits) as (server, client):
        await client.call("rpc.describe")  # connected (built-in: not rate limited)
        await trio.testing.wait_all_tasks_blocked()  # the supervisor's own calls too
        async with _counting_tasks() as count:
            assert await client.call("inl.now", 1) == [1, 0]
            with pytest.raises(rpc.RpcError) as info:
                await client.call("inl.missing", 2)
            assert info.value.status is Status.UNIMPLEMENTED
            with pytest.raises(rpc.RpcError) as info:
                await client.call("inl.now", 3)
            assert info.value.status is Status.RESOURCE_EXHAUSTED
        assert count.tasks == 0
        assert server.rejected == 1


def _recording(seen: list[tuple[str, str]]) -> Callable[[Context], Any]:
    @asynccontextmanager
    async def interceptor(ctx: Context) -> AsyncIterator[None]:
        seen.append(("enter", ctx.method))
        try:
            yield
        except RpcError as exc:
            seen.append((exc.status.name, ctx.method))
            raise
        seen.append(("ok", ctx.method))

    return interceptor


async def test_interceptors_see_every_call() -> None:
    seen: list[tuple[str, str]] = []
    async with connected([svc], interceptors=[_recording(seen)]) as (_, client):
        for method in ("inl.now", "inl.task"):
            assert await client.call(method, b"x") == [b"x", 0]
            with pytest.raises(rpc.RpcError):
                await client.call(method, b"x", fail="rpc")
    steps = [("enter", "M"), ("ok", "M"), ("enter", "M"), ("NOT_FOUND", "M")]
    assert [(what, "M") for what, _ in seen] == steps * 2
    assert [m for _, m in seen] == ["inl.now"] * 4 + ["inl.task"] * 4


async def test_unary_now_matches_unary(caplog: pytest.LogCaptureFixture) -> None:
    """The dispatcher's two entry points, side by side on the same method."""
    dispatcher = Dispatcher([svc])
    method = dispatcher.methods["inl.now"]

    async def both(args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[Any]:
        out: list[Any] = []
        for run in ("now", "await"):
            ctx = Context("inl.now", deadline=trio.current_time() + 10)
            try:
                if run == "now":
                    result = dispatcher.unary_now(ctx, method, args, kwargs)
                else:
                    result = await dispatcher.unary(ctx, method, args, kwargs)
                out.append(("ok", type(result).__name__))
            except RpcError as exc:
                out.append(("error", exc.status, exc.message))
        return out

    with caplog.at_level(logging.ERROR, logger="ghostwire.rpc"):
        for args, kwargs in CASES:
            first, second = await both(args, kwargs)
            assert first == second
    assert dispatcher.statistics().calls_in_flight == 0


async def test_a_stream_gone_before_it_is_read_ends_only_its_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A transport error while a call is taken inline ends that call (its
    stream is closed by a task, as a call's task would), not the connection."""
    real = FrameReader.receive_whole_nowait
    failures = [trio.BrokenResourceError("gone")]

    def fail_once(reader: FrameReader) -> bool:
        if failures:
            raise failures.pop()
        return real(reader)

    async with connected([svc]) as (_, client):
        await client.call("inl.now", b"warm-up")
        # The supervisor's own calls (describe, health) answered too: the
        # patched read is the next call's.
        await trio.testing.wait_all_tasks_blocked()
        monkeypatch.setattr(FrameReader, "receive_whole_nowait", fail_once)
        with pytest.raises(rpc.RpcError) as info:  # the stream ended without a reply
            await client.call("inl.now", b"lost")
        assert info.value.status is Status.INTERNAL
        assert await client.call("inl.now", b"next") == [b"next", 0]
    assert not failures
