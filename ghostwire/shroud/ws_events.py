"""WebSocket routes backed by RPC event channels.

A WebSocket route's message-source handler (``h(req)`` yielding messages, see
:mod:`.websocket`) is exactly the shape of a subscription; these helpers make
one from an event channel, so each WebSocket client gets its own
subscription, ended when the socket closes::

    grpc = ghostwire.GrpcClient(...)
    server.websocket("/blocks/:chain", ghostwire.grpcEvents(
        grpc, "chain.Chain", "Blocks", lambda req: {"chain": req.getParam("chain")}))

    # a native ghostwire.rpc client
    def contract(req):
        return {"contract_address": req.getParam("address")}

    logs = ghostwire.rpcEvents(rpc_client, "zvm.contract_events", contract)
    server.websocket("/logs/:address", logs)

Each event goes out as one JSON text message ``{"data": ..., "cursor": ...}``
(``with_cursor=False``: the data alone; bytes data that is UTF-8 JSON, as
a gRPC-style channel sends, is embedded as JSON). ``?after=<cursor>`` on the
WebSocket URL resumes after that cursor, so a browser that reconnects
passes the last cursor it saw. When the channel ends the socket closes
normally; when it fails, with 1011 (the error's status in the reason).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any

from .. import rpc
from .message import UnifiedRequest

OpenSubscription = Callable[[UnifiedRequest], AbstractAsyncContextManager[AsyncIterable[Any]]]
ArgumentsFrom = Callable[[UnifiedRequest], Any]


def _data(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        try:
            return json.loads(value)
        except ValueError:
            return bytes(value).hex()
    return value


def _message(item: Any, with_cursor: bool) -> Any:
    if isinstance(item, rpc.Event):
        data = _data(item.data)
        return {"data": data, "cursor": item.cursor} if with_cursor else data
    return _data(item)


def eventSource(
    open_subscription: OpenSubscription, *, with_cursor: bool = True
) -> Callable[[UnifiedRequest], AsyncIterator[Any]]:
    """A WebSocket message source from ``open_subscription(req)``, an async context
    manager yielding an async iterable of events (an ``rpc.Subscription``, or
    anything iterable the same way)."""

    async def source(req: UnifiedRequest) -> AsyncIterator[Any]:
        async with open_subscription(req) as events:
            async for item in events:
                yield _message(item, with_cursor)

    return source


def after_cursor(req: UnifiedRequest, query: str = "after") -> Any:
    """The resume cursor in the URL's query (a number, JSON, or the text), or None."""
    raw = req.getQuery(query)
    if raw is None or raw == "":
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def rpcEvents(
    client: rpc.Client,
    method: str,
    arguments: ArgumentsFrom | None = None,
    *,
    after_query: str = "after",
    with_cursor: bool = True,
) -> Callable[[UnifiedRequest], AsyncIterator[Any]]:
    """A WebSocket message source subscribing ``client`` to ``method``; ``arguments(req)``
    gives the channel's keyword arguments (a mapping)."""

    def open_subscription(req: UnifiedRequest) -> AbstractAsyncContextManager[Any]:
        kwargs: Mapping[str, Any] = arguments(req) if arguments is not None else {}
        return client.subscribe(method, after=after_cursor(req, after_query), **kwargs)

    return eventSource(open_subscription, with_cursor=with_cursor)


def grpcEvents(
    client: Any,
    service: str,
    method: str,
    request: ArgumentsFrom | None = None,
    *,
    after_query: str = "after",
    with_cursor: bool = True,
) -> Callable[[UnifiedRequest], AsyncIterator[Any]]:
    """The same for a :class:`~.grpc_client.GrpcClient` and a ``GrpcService.addEvents``
    channel; ``request(req)`` gives the request (JSON-encoded unless bytes)."""

    def open_subscription(req: UnifiedRequest) -> AbstractAsyncContextManager[Any]:
        message = request(req) if request is not None else None
        after = after_cursor(req, after_query)
        subscription: AbstractAsyncContextManager[Any] = client.subscribe(
            service, method, message, after=after
        )
        return subscription

    return eventSource(open_subscription, with_cursor=with_cursor)


event_source = eventSource
rpc_events = rpcEvents
grpc_events = grpcEvents

__all__ = [
    "after_cursor",
    "eventSource",
    "event_source",
    "grpcEvents",
    "grpc_events",
    "rpcEvents",
    "rpc_events",
]
