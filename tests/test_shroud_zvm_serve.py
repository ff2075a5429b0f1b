"""serve_zvm_stream: answering ZVM-framed requests on a stream (trio memory streams)."""

from __future__ import annotations

import json

import trio
import trio.testing
from test_shroud_zvm_wire import DEPLOY_FRAME, HEALTH_FRAME

from ghostwire.shroud.zvm_serve import serve_zvm_stream
from ghostwire.shroud.zvm_wire import FrameDecoder, MessageType, QuicRequest, QuicResponse


async def handler(request: QuicRequest) -> QuicResponse:
    await trio.lowlevel.checkpoint()
    if request.message_type is MessageType.CONTRACT_CALL:
        raise RuntimeError("the VM fell over")
    payload = json.dumps({"seen": request.message_type.name})
    return QuicResponse(True, request.request_id, payload, None, request.timestamp)


async def exchange(*chunks: bytes) -> tuple[list[tuple[MessageType, QuicResponse]], bytes]:
    client, server = trio.testing.memory_stream_pair()
    replies: list[tuple[MessageType, QuicResponse]] = []
    decoder = FrameDecoder()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve_zvm_stream, server, handler)
            for chunk in chunks:
                await client.send_all(chunk)
            await client.send_eof()
            while data := await client.receive_some():
                replies += [(f.message_type, f.response()) for f in decoder.feed(data)]
    return replies, bytes(decoder._buffer)


async def test_requests_split_anywhere_get_one_response_each() -> None:
    wire = DEPLOY_FRAME + HEALTH_FRAME
    replies, rest = await exchange(wire[:3], wire[3:100], wire[100:])
    assert rest == b""
    assert [t for t, _ in replies] == [MessageType.CONTRACT_DEPLOY, MessageType.HEALTH_CHECK]
    deploy, health = (r for _, r in replies)
    assert deploy.success and deploy.request_id == 1720000000
    assert deploy.payload_json() == {"seen": "CONTRACT_DEPLOY"}
    assert health.request_id == 1 and health.error_message is None


async def test_bad_envelope_and_failing_handler_answer_failure_and_go_on() -> None:
    bad = b"\x30\x04\x00\x00\x00nope"
    call = QuicRequest(MessageType.CONTRACT_CALL, 5, "{}", 0)
    call_frame = b"\x11" + len(call.encode()).to_bytes(4, "little") + call.encode()
    replies, _ = await exchange(bad, call_frame, HEALTH_FRAME)
    (t1, r1), (t2, r2), (t3, r3) = replies
    assert t1 is MessageType.HEALTH_CHECK and not r1.success and r1.request_id == 0
    assert "malformed" in (r1.error_message or "")
    assert t2 is MessageType.CONTRACT_CALL and not r2.success and r2.request_id == 5
    assert r2.error_message == "internal error"
    assert t3 is MessageType.HEALTH_CHECK and r3.success  # the stream kept going


async def test_undelimitable_frame_ends_the_stream() -> None:
    replies, _ = await exchange(HEALTH_FRAME, b"\x7f\x00\x00\x00\x00", HEALTH_FRAME)
    assert len(replies) == 1  # answered the first, then closed at the unknown type
