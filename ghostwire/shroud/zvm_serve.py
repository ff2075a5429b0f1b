"""Answering ZVM-framed requests on a byte stream (a QUIC stream, or TCP).

So a ghostwire service can answer peers that still speak ZVM's
``[type][u32 LE length][JSON envelope]`` framing
(:mod:`ghostwire.shroud.zvm_wire`) while newer clients use ghostwire RPC::

    async def handler(request: QuicRequest) -> QuicResponse: ...

    async def on_connection(conn):            # ghostwire.quic.serve handler
        async with trio.open_nursery() as nursery:
            while True:
                stream = await conn.accept_stream()
                nursery.start_soon(serve_zvm_stream, stream, handler)

Each request frame gets one response frame of the same type. A frame
whose envelope is malformed, or whose handler raises, gets
``success=false`` with an ``error_message`` and the stream goes on; a frame
that cannot be delimited (unknown type byte, oversized length) ends the
stream, since the framing is lost.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Awaitable, Callable

import trio

from .zvm_wire import (
    DEFAULT_MAX_FRAME_SIZE,
    Frame,
    FrameDecoder,
    QuicRequest,
    QuicResponse,
    ZvmWireError,
    encode_response_frame,
)

log = logging.getLogger("ghostwire.shroud")

ZvmHandler = Callable[[QuicRequest], Awaitable[QuicResponse] | QuicResponse]
RECEIVE_SIZE = 65536


async def serve_zvm_stream(
    stream: trio.abc.Stream,
    handler: ZvmHandler,
    *,
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
) -> None:
    """Answer framed requests until the peer ends the stream; see the module docs."""
    decoder = FrameDecoder(max_frame_size)
    try:
        while True:
            data = await stream.receive_some(RECEIVE_SIZE)
            if not data:
                decoder.close()  # raises if the peer stopped inside a frame
                return
            decoder.receive_data(data)
            while (frame := decoder.next_frame()) is not None:
                response = await _answer(frame, handler)
                await stream.send_all(encode_response_frame(frame.message_type, response))
    except ZvmWireError as exc:
        log.info("ZVM stream closed: %s", exc)
    except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        log.debug("ZVM stream broke: %r", exc)
    finally:
        if isinstance(stream, trio.abc.HalfCloseableStream):
            try:
                await stream.send_eof()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass


async def _answer(frame: Frame, handler: ZvmHandler) -> QuicResponse:
    try:
        request = frame.request()
    except ZvmWireError as exc:
        return _failure(0, f"malformed request: {exc}")
    try:
        result: object = handler(request)
        if inspect.isawaitable(result):
            result = await result
    except Exception:
        log.exception("ZVM handler failed for %s", request.message_type.name)
        return _failure(request.request_id, "internal error")
    if not isinstance(result, QuicResponse):
        return _failure(request.request_id, "internal error: the handler returned no response")
    return result


def _failure(request_id: int, message: str) -> QuicResponse:
    return QuicResponse(False, request_id, "", message, int(time.time()))


__all__ = ["ZvmHandler", "serve_zvm_stream"]
