"""Running middleware and a handler, plain functions or ``async def``, with a real ``next``.

A middleware is ``mw(req, res, next)``. ``next`` runs the rest of the chain
(the following middleware, then the handler) and returns once it is done,
so code after it sees the handler's response. It accepts both of the
original's forms: the code's ``next()`` and the documented ``next(req, res)``
(which may pass other request/response objects on). A middleware that does
not call ``next`` ends the request there (the original could not
short-circuit; its ``next`` did nothing).

What ``next`` returns depends on the middleware calling it:

* an ``async def`` middleware gets a ``next`` to ``await``;
* a plain-function middleware gets a ``next`` that runs synchronously. When
  everything after it is plain too, it all runs inline on the trio thread.
  When something after it is ``async def``, the plain middleware runs in a
  worker thread (``trio.to_thread``) and its ``next`` hands the rest of the
  chain back to trio (``trio.from_thread``), so both kinds mix freely.

A handler (``h(req, res)``) may also be either kind.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import trio

from .message import UnifiedRequest, UnifiedResponse

Handler = Callable[[UnifiedRequest, UnifiedResponse], Any]
Middleware = Callable[..., Any]


def is_async_callable(fn: Any) -> bool:
    """True for ``async def`` functions (also behind ``functools.partial`` or ``__call__``)."""
    while hasattr(fn, "func"):  # functools.partial
        fn = fn.func
    if inspect.iscoroutinefunction(fn):
        return True
    call = getattr(fn, "__call__", None)  # noqa: B004 (an object's async __call__)
    return call is not None and inspect.iscoroutinefunction(call)


class NextCalledTwice(RuntimeError):
    """A middleware called ``next`` more than once."""


class Chain:
    """One request's run through ``middlewares`` and then ``handler``."""

    def __init__(self, middlewares: Sequence[Middleware], handler: Handler) -> None:
        self.steps: list[Callable[..., Any]] = [*middlewares, handler]
        self.is_async = [is_async_callable(step) for step in self.steps]
        # plain_from[i]: every step from i on is a plain function
        self.plain_from = [False] * (len(self.steps) + 1)
        self.plain_from[len(self.steps)] = True
        for i in range(len(self.steps) - 1, -1, -1):
            self.plain_from[i] = self.plain_from[i + 1] and not self.is_async[i]

    async def run(self, req: UnifiedRequest, res: UnifiedResponse, index: int = 0) -> None:
        """Run the chain from step ``index`` (on the trio thread)."""
        if index >= len(self.steps):
            return
        step = self.steps[index]
        is_handler = index == len(self.steps) - 1
        if self.is_async[index]:
            args = (req, res) if is_handler else (req, res, _AsyncNext(self, index + 1, req, res))
            await _await_if_needed(step(*args))
        elif is_handler or self.plain_from[index + 1]:
            result = self.run_sync(req, res, index)
            await _await_if_needed(result)
        else:
            # A plain middleware followed by async steps: it blocks in a worker
            # thread while its next() runs them back on trio.
            next_ = _ThreadNext(self, index + 1, req, res)
            result = await trio.to_thread.run_sync(step, req, res, next_)
            await _await_if_needed(result)

    def run_sync(self, req: UnifiedRequest, res: UnifiedResponse, index: int) -> Any:
        """Run plain steps from ``index`` inline (every one of them is a plain function)."""
        if index >= len(self.steps):
            return None
        step = self.steps[index]
        if index == len(self.steps) - 1:
            return step(req, res)
        return step(req, res, _SyncNext(self, index + 1, req, res))


async def _await_if_needed(result: Any) -> None:
    # A plain function may still hand back an awaitable (a lambda calling an
    # async function): run it rather than drop it.
    if inspect.isawaitable(result):
        await result


class _NextBase:
    def __init__(self, chain: Chain, index: int, req: UnifiedRequest, res: UnifiedResponse) -> None:
        self.chain, self.index, self.req, self.res = chain, index, req, res
        self.called = False

    def _args(
        self, req: UnifiedRequest | None, res: UnifiedResponse | None
    ) -> tuple[UnifiedRequest, UnifiedResponse]:
        if self.called:
            raise NextCalledTwice("next() was called twice by one middleware")
        self.called = True
        return (req if req is not None else self.req, res if res is not None else self.res)


class _AsyncNext(_NextBase):
    """``await next()`` / ``await next(req, res)`` in an ``async def`` middleware."""

    def __call__(
        self, req: UnifiedRequest | None = None, res: UnifiedResponse | None = None
    ) -> Awaitable[None]:
        req, res = self._args(req, res)
        return self.chain.run(req, res, self.index)


class _SyncNext(_NextBase):
    """``next()`` in a plain middleware whose followers are all plain."""

    def __call__(
        self, req: UnifiedRequest | None = None, res: UnifiedResponse | None = None
    ) -> None:
        req, res = self._args(req, res)
        result = self.chain.run_sync(req, res, self.index)
        if inspect.isawaitable(result):  # pragma: no cover - a plain step returned a coroutine
            raise TypeError("a plain handler returned an awaitable inside a plain chain")


class _ThreadNext(_NextBase):
    """``next()`` in a plain middleware running in a worker thread."""

    def __call__(
        self, req: UnifiedRequest | None = None, res: UnifiedResponse | None = None
    ) -> None:
        req, res = self._args(req, res)
        trio.from_thread.run(self.chain.run, req, res, self.index)


__all__ = ["Chain", "Handler", "Middleware", "NextCalledTwice", "is_async_callable"]
