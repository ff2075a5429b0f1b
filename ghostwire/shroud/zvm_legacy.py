"""Routes that answer ZVM's Shroud-era client from a :class:`~.zvm_service.ZvmBackend`.

ZVM's Shroud-era ``QuicClient`` posted its JSON envelope to
``http://{endpoint}/api`` and streamed contract events from
``ws://{endpoint}/stream``. These two handlers serve that, on a
``UnifiedServer``, from the same backend the RPC services use::

    server.post("/api", zvm_api_handler(chain))
    server.websocket("/stream", zvm_stream_handler(chain))

``/api``: the body is a ``QuicRequest`` envelope; the reply a
``QuicResponse`` (``application/json``), ``success=false`` with an
``error_message`` for a failed operation, status 400 for an envelope that
cannot be read. ``/stream``: the client's first message is
``{"contract_address": "<40 hex>", "stream_type": "events"}``; each
contract event is then sent as one JSON text message (ZVM's
``ContractEvent``), live, until either side closes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from .message import UnifiedRequest, UnifiedResponse
from .websocket import WebSocket
from .zvm_service import ZvmBackend, zvm_frame_handler
from .zvm_wire import MalformedEnvelope, QuicRequest, QuicResponse, ZvmWireError, address_from_hex


def zvm_api_handler(
    backend: ZvmBackend,
) -> Callable[[UnifiedRequest, UnifiedResponse], Awaitable[None]]:
    """``POST /api``: one ``QuicRequest`` envelope in, one ``QuicResponse`` out."""
    answer = zvm_frame_handler(backend)

    async def api(req: UnifiedRequest, res: UnifiedResponse) -> None:
        try:
            request = QuicRequest.decode(req.body)
        except ZvmWireError as exc:
            res.setStatus(400)
            failure = QuicResponse(False, 0, "", f"malformed request: {exc}", int(time.time()))
            res.json(failure.encode().decode())
            return
        response: QuicResponse = await answer(request)
        res.json(response.encode().decode())

    return api


def zvm_stream_handler(backend: ZvmBackend) -> Callable[[WebSocket], Awaitable[None]]:
    """``ws://.../stream``: a contract's events after ZVM's subscription message."""

    async def stream(ws: WebSocket) -> None:
        first = await ws.receive()
        if first is None:
            return
        try:
            request: Any = json.loads(first)
            if not isinstance(request, dict) or request.get("stream_type", "events") != "events":
                raise MalformedEnvelope("expected {contract_address, stream_type: events}")
            contract = address_from_hex(str(request.get("contract_address", "")))
        except (ValueError, MalformedEnvelope) as exc:
            await ws.close(1008, f"bad subscription: {exc}"[:120])  # RFC 6455 §7.4.1 policy
            return

        async def push() -> None:
            async for event in backend.events(contract, None):
                await ws.send(json.dumps(event.data, separators=(",", ":")))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(push)
            # keep reading, so the client's close is answered and ends the push
            while await ws.receive() is not None:
                pass
            nursery.cancel_scope.cancel()

    return stream


__all__ = ["zvm_api_handler", "zvm_stream_handler"]
