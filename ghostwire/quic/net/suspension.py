"""Whether a handler can suspend: read once from its bytecode, at registration.

A coroutine reaches a schedule point only through ``await``, ``async for``
or ``async with``. A handler whose code has none of them runs to its end
in one step when awaited: nothing can cancel it while it runs (trio
delivers cancellation only at schedule points) and nothing else runs
meanwhile. Such a handler may be run without a task of its own
(:func:`run_to_end`): ``Connection.serve_requests`` answers a whole request
that way as its stream opens, and the RPC dispatcher runs such unary calls
inline and without the cancel scope it opens for every other call
(``Dispatcher.unary``; a scope costs a few microseconds).

The answer errs on "may suspend": anything but an ``async def`` function
(a ``functools.partial``, a callable object, a plain function returning
a coroutine, a C function) may, and so
does any code holding one of the opcodes ``await``, ``async for`` and
``async with`` compile to. At import, the detector checks itself against
functions that do suspend; should a Python version compile them to other
opcodes, every handler counts as one that may suspend.
"""

from __future__ import annotations

import contextvars
import dis
import functools
import inspect
import types
from collections.abc import Callable
from typing import Any

# What await, async for and async with compile to (CPython 3.11-3.13).
_SUSPENDING = frozenset(
    {
        "GET_AWAITABLE",
        "SEND",
        "YIELD_VALUE",
        "GET_AITER",
        "GET_ANEXT",
        "END_ASYNC_FOR",
        "BEFORE_ASYNC_WITH",
        "YIELD_FROM",
        "GET_YIELD_FROM_ITER",
    }
)


def _has_suspending_opcode(function: Callable[..., Any]) -> bool:
    if type(function) is not types.FunctionType:
        return True
    code = function.__code__
    if not code.co_flags & inspect.CO_COROUTINE:
        # Not an ``async def`` (say, a plain function marked as a coroutine
        # function that returns another one's coroutine): that one may.
        return True
    return _code_may_suspend(code)


# Per code object: serve_requests asks once per connection, and reading the
# bytecode costs tens of microseconds (a handshake's worth of CPU is ~1 ms).
@functools.lru_cache(maxsize=256)
def _code_may_suspend(code: types.CodeType) -> bool:
    return any(i.opname in _SUSPENDING for i in dis.get_instructions(code))


def _detector_works() -> bool:
    async def awaits(x: Any) -> None:
        await x

    async def iterates(x: Any) -> None:
        async for _ in x:
            pass

    async def enters(x: Any) -> None:
        async with x:
            pass

    async def returns(x: Any) -> Any:
        return x

    suspending = (awaits, iterates, enters)
    return all(map(_has_suspending_opcode, suspending)) and not _has_suspending_opcode(returns)


_WORKS = _detector_works()


def may_suspend(handler: Callable[..., Any]) -> bool:
    """False only when awaiting ``handler(...)`` surely finishes without a
    schedule point (see the module docstring)."""
    return not _WORKS or _has_suspending_opcode(handler)


def run_to_end(coroutine: Any) -> Any:
    """Drive the coroutine of a handler that cannot suspend (``may_suspend``
    said False) to its end, and return its result (or raise its exception).
    It runs in a copy of the current context, as a task would: context
    variables it sets do not outlive the call."""
    try:
        contextvars.copy_context().run(coroutine.send, None)
    except StopIteration as done:
        return done.value
    coroutine.close()  # cannot happen for a handler may_suspend accepts
    raise RuntimeError(f"{coroutine!r} suspended outside a task")


__all__ = ["may_suspend", "run_to_end"]
