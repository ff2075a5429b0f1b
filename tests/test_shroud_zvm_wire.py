"""ZVM / ghostd wire codecs against byte strings written out from the reference.

The expected bytes below are typed by hand from the reference's description
(shroud-ghostwire.md §7.2 and §7.6): a type byte, a little-endian u32 length,
then the compact JSON envelope in Zig std.json's field order. They are not
produced by the code under test.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ghostwire.errors import GhostwireError
from ghostwire.shroud import zvm_wire as zw
from ghostwire.shroud.zvm_wire import (
    FrameDecoder,
    FrameTooLarge,
    GhostdMessageType,
    MalformedEnvelope,
    MessageType,
    QuicRequest,
    QuicResponse,
    TruncatedFrame,
    UnknownMessageType,
)

DEPLOY_JSON = (
    b'{"message_type":"CONTRACT_DEPLOY","request_id":1720000000,'
    b'"payload":"{\\"bytecode\\":\\"6080\\",\\"gas_limit\\":1000000}",'
    b'"timestamp":1720000000}'
)
# 0x10 CONTRACT_DEPLOY, then 139 (0x8b) as a u32 little-endian.
DEPLOY_FRAME = b"\x10\x8b\x00\x00\x00" + DEPLOY_JSON

HEALTH_FRAME = (
    b"\x30\x4b\x00\x00\x00"
    b'{"message_type":"HEALTH_CHECK","request_id":1,"payload":"{}","timestamp":0}'
)

FAILED_RESPONSE = (
    b'{"success":false,"request_id":7,"payload":"",'
    b'"error_message":"HTTP request failed","timestamp":-1}'
)


def test_message_type_table_is_the_reference_one() -> None:
    expected = {
        "WALLET_TRANSACTION": 0x01, "BALANCE_QUERY": 0x02, "WALLET_CREATE": 0x03,
        "WALLET_SIGN": 0x04, "IDENTITY_VERIFY": 0x05, "CONTRACT_DEPLOY": 0x10,
        "CONTRACT_CALL": 0x11, "CONTRACT_QUERY": 0x12, "CONTRACT_EVENT_STREAM": 0x13,
        "BLOCK_SYNC": 0x20, "TX_BROADCAST": 0x21, "PEER_DISCOVERY": 0x22,
        "CONSENSUS_MESSAGE": 0x23, "HEALTH_CHECK": 0x30, "STATUS_QUERY": 0x31,
        "METRICS_REQUEST": 0x32,
    }  # fmt: skip
    assert {m.name: m.value for m in MessageType} == expected
    # ghostd's table is separate: 0x03 means something else there.
    assert GhostdMessageType(0x03).name == "VM_EXECUTION"
    assert MessageType(0x03).name == "WALLET_CREATE"


def test_request_envelope_encodes_to_the_hand_written_bytes() -> None:
    request = QuicRequest(
        MessageType.CONTRACT_DEPLOY,
        1720000000,
        zw.payload_string({"bytecode": "6080", "gas_limit": 1000000}),
        1720000000,
    )
    assert request.encode() == DEPLOY_JSON
    assert zw.encode_request_frame(request) == DEPLOY_FRAME


def test_request_frame_decodes_from_the_hand_written_bytes() -> None:
    frame, rest = zw.decode_frame(DEPLOY_FRAME + b"tail")
    assert rest == b"tail"
    assert frame.message_type is MessageType.CONTRACT_DEPLOY
    request = frame.request()
    assert request.request_id == 1720000000
    assert request.timestamp == 1720000000
    assert request.payload_json() == {"bytecode": "6080", "gas_limit": 1000000}
    assert zw.encode_request_frame(request) == DEPLOY_FRAME


def test_health_check_frame() -> None:
    request = QuicRequest(MessageType.HEALTH_CHECK, 1, "{}", 0)
    assert zw.encode_request_frame(request) == HEALTH_FRAME
    assert zw.decode_frame(HEALTH_FRAME)[0].request() == request


def test_response_envelope_round_trip_with_null_and_with_message() -> None:
    failed = QuicResponse.decode(FAILED_RESPONSE)
    assert failed == QuicResponse(False, 7, "", "HTTP request failed", -1)
    assert failed.encode() == FAILED_RESPONSE
    ok = QuicResponse(True, 9, '{"balance":5}', None, 1)
    expected = (
        b'{"success":true,"request_id":9,"payload":"{\\"balance\\":5}",'
        b'"error_message":null,"timestamp":1}'
    )
    assert ok.encode() == expected
    assert QuicResponse.decode(expected).payload_json() == {"balance": 5}
    # an optional field left out decodes as null
    short = b'{"success":true,"request_id":1,"payload":"","timestamp":0}'
    assert QuicResponse.decode(short).error_message is None


def test_message_type_may_be_numeric_on_input() -> None:
    request = QuicRequest.decode(b'{"message_type":17,"request_id":1,"payload":"","timestamp":0}')
    assert request.message_type is MessageType.CONTRACT_CALL


def test_utf8_payload_is_written_as_is() -> None:
    request = QuicRequest(MessageType.CONTRACT_CALL, 2, zw.payload_string({"n": "é"}), 3)
    assert '"{\\"n\\":\\"é\\"}"'.encode() in request.encode()
    assert QuicRequest.decode(request.encode()) == request


def test_incremental_decoder_byte_by_byte() -> None:
    decoder = FrameDecoder()
    frames = []
    for i in range(len(DEPLOY_FRAME + HEALTH_FRAME)):
        frames += decoder.feed((DEPLOY_FRAME + HEALTH_FRAME)[i : i + 1])
    kinds = [f.message_type for f in frames]
    assert kinds == [MessageType.CONTRACT_DEPLOY, MessageType.HEALTH_CHECK]
    assert decoder.buffered == 0
    decoder.close()


@pytest.mark.parametrize(
    "data, error",
    [
        (b"\x10\x8b\x00", TruncatedFrame),  # header cut
        (DEPLOY_FRAME[:-1], TruncatedFrame),  # body cut
        (b"\x7f\x00\x00\x00\x00", UnknownMessageType),  # no such type
        (b"\x10\xff\xff\xff\xff", FrameTooLarge),  # 4 GiB announced
    ],
)
def test_malformed_frames_raise_typed_errors(data: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        zw.decode_frame(data)
    assert issubclass(error, zw.ZvmWireError)
    assert issubclass(error, GhostwireError)


def test_decoder_rejects_early_and_on_close() -> None:
    with pytest.raises(FrameTooLarge):
        FrameDecoder(max_frame_size=100).feed(b"\x10\x65\x00\x00\x00")  # 101 bytes, before the body
    decoder = FrameDecoder()
    assert decoder.feed(DEPLOY_FRAME[:10]) == []
    with pytest.raises(TruncatedFrame):
        decoder.close()


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"\xff\xfe",
        b"[1,2]",
        b'{"message_type":"CONTRACT_DEPLOY","request_id":1,"payload":"x"}',  # no timestamp
        b'{"message_type":"CONTRACT_DEPLOY","request_id":-1,"payload":"","timestamp":0}',
        b'{"message_type":"CONTRACT_DEPLOY","request_id":true,"payload":"","timestamp":0}',
        b'{"message_type":"CONTRACT_DEPLOY","request_id":18446744073709551616,"payload":"","timestamp":0}',
        b'{"message_type":"CONTRACT_DEPLOY","request_id":1,"payload":{},"timestamp":0}',
        b'{"message_type":null,"request_id":1,"payload":"","timestamp":0}',
    ],
)
def test_malformed_request_envelopes(body: bytes) -> None:
    with pytest.raises(MalformedEnvelope):
        QuicRequest.decode(body)


def test_unknown_type_name_and_frame_envelope_mismatch() -> None:
    with pytest.raises(UnknownMessageType):
        QuicRequest.decode(b'{"message_type":"MINT","request_id":1,"payload":"","timestamp":0}')
    frame = zw.Frame(MessageType.CONTRACT_CALL, DEPLOY_JSON)
    with pytest.raises(MalformedEnvelope):
        frame.request()
    with pytest.raises(MalformedEnvelope):
        QuicResponse.decode(b'{"success":1,"request_id":1,"payload":"","timestamp":0}')
    with pytest.raises(MalformedEnvelope):
        QuicRequest(MessageType.HEALTH_CHECK, 1, "{", 0).payload_json()


def test_ghostd_messages() -> None:
    # [0x02][JSON]: a balance query with the address as a byte array
    address = bytes(range(20))
    wire = zw.encode_ghostd_message(
        GhostdMessageType.BALANCE_QUERY, {"address": zw.address_to_ghostd(address)}
    )
    assert wire == b'\x02{"address":[0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19]}'
    assert zw.decode_ghostd_message(wire) == (
        GhostdMessageType.BALANCE_QUERY,
        {"address": list(range(20))},
    )
    with pytest.raises(UnknownMessageType):
        zw.decode_ghostd_message(b"\x10{}")
    with pytest.raises(TruncatedFrame):
        zw.decode_ghostd_message(b"")
    with pytest.raises(MalformedEnvelope):
        zw.decode_ghostd_message(b"\x01{")
    with pytest.raises(FrameTooLarge):  # balance queries are capped at 256 bytes
        zw.decode_ghostd_message(b"\x02" + b" " * 257)


def test_addresses() -> None:
    raw = bytes.fromhex("00112233445566778899aabbccddeeff00112233")
    assert zw.address_to_hex(raw) == "00112233445566778899aabbccddeeff00112233"
    assert zw.address_from_hex("0x00112233445566778899AABBCCDDEEFF00112233") == raw
    for bad in ("0x1234", "zz" * 20, "0" * 41):
        with pytest.raises(MalformedEnvelope):
            zw.address_from_hex(bad)
    with pytest.raises(MalformedEnvelope):
        zw.address_to_hex(b"\x00" * 19)


@given(
    st.sampled_from(list(MessageType)),
    st.integers(0, (1 << 64) - 1),
    st.text(),
    st.integers(-(1 << 63), (1 << 63) - 1),
)
def test_request_frame_round_trip(kind: MessageType, rid: int, payload: str, ts: int) -> None:
    request = QuicRequest(kind, rid, payload, ts)
    wire = zw.encode_request_frame(request)
    assert wire[0] == kind and int.from_bytes(wire[1:5], "little") == len(wire) - 5
    frame, rest = zw.decode_frame(wire)
    assert rest == b"" and frame.request() == request


@given(st.binary(max_size=64))
def test_decoder_never_raises_anything_untyped(data: bytes) -> None:
    try:
        FrameDecoder(max_frame_size=1 << 10).feed(data)
        zw.decode_frame(data)
    except zw.ZvmWireError:
        pass
