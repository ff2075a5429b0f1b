"""An independent client: aioquic plus the plain msgpack library, written from
docs/protocol.md alone (no ghostwire.rpc code on the client side), calling our
RPC server over ALPN ghostwire-rpc."""

from __future__ import annotations

import functools
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import msgpack
import pytest
import trio
from aioquic_peer import PeerClient, PeerLoop, PeerStream, peer_configuration
from quic_pair import server_identity, test_ca

import ghostwire.quic as quic
import ghostwire.rpc as rpc

pytestmark = pytest.mark.interop

# -- the protocol, from the spec ------------------------------------------------------


def bigint_default(value: object) -> Any:
    if isinstance(value, int):  # msgpack calls us only for integers past 64 bits
        size = (value if value >= 0 else ~value).bit_length() // 8 + 1
        return msgpack.ExtType(1, value.to_bytes(size, "big", signed=True))
    raise TypeError(type(value))


def ext_hook(code: int, data: bytes) -> Any:
    assert code == 1
    return int.from_bytes(data, "big", signed=True)


def pack(value: Any) -> bytes:
    packed: bytes = msgpack.packb(value, default=bigint_default, use_bin_type=True)
    return packed


def frame(frame_type: int, payload: bytes) -> bytes:
    return struct.pack(">BI", frame_type, len(payload)) + payload


def request(method: str, args: list[Any], kwargs: dict[str, Any], **header: Any) -> bytes:
    return frame(1, pack({"method": method, **header})) + frame(0, pack([args, kwargs]))


def parse_frames(data: bytes) -> list[tuple[int, Any]]:
    frames = []
    while data:
        frame_type, length = struct.unpack_from(">BI", data)
        payload = data[5 : 5 + length]
        frames.append(
            (frame_type, msgpack.unpackb(payload, ext_hook=ext_hook, strict_map_key=False))
        )
        data = data[5 + length :]
    return frames


async def aq_call(stream: PeerStream, data: bytes) -> list[tuple[int, Any]]:
    stream.write(data, end_stream=True)
    return parse_frames(await stream.read_all())


# -- the server under test ------------------------------------------------------------------


def service(cancelled: trio.Event) -> rpc.Service:
    zvm = rpc.Service("zvm")

    @zvm.call
    async def transfer(ctx: rpc.Context, to: bytes, amount: int) -> dict[str, Any]:
        if amount < 0:
            raise rpc.RpcError(rpc.Status.OUT_OF_RANGE, "negative amount", details=amount)
        return {"to": to, "amount": amount, "fee": -(2**70), "meta": dict(ctx.metadata)}

    @zvm.call
    async def hang(ctx: rpc.Context) -> None:
        try:
            await trio.sleep_forever()
        finally:
            cancelled.set()

    @zvm.events
    async def blocks(ctx: rpc.Context) -> AsyncIterator[rpc.Event]:
        start = 0 if ctx.resume_after is None else ctx.resume_after + 1
        for height in range(start, 5):
            yield rpc.Event({"height": height}, cursor=height)

    return zvm


@asynccontextmanager
async def aioquic_client(
    peer: PeerLoop, tmp_path: Path
) -> AsyncIterator[tuple[PeerClient, trio.Event]]:
    ca_file = tmp_path / "ca.pem"
    test_ca().write_pem(ca_file)
    identity = server_identity()
    config = quic.ServerConfig(
        alpn=[rpc.ALPN], certificate_chain=identity.chain, private_key=identity.private_key
    )
    cancelled = trio.Event()
    server = rpc.Server([service(cancelled)], config=config)
    async with trio.open_nursery() as nursery:
        listener = await nursery.start(functools.partial(server.serve, 0, host="127.0.0.1"))
        configuration = peer_configuration(
            is_client=True, alpn=[rpc.ALPN], cafile=str(ca_file), server_name="localhost"
        )
        client = await peer.run(PeerClient.connect("127.0.0.1", listener.port, configuration))
        try:
            yield client, cancelled
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(10):
                await peer.run(client.close())
            nursery.cancel_scope.cancel()


async def test_aioquic_client_calls_with_big_integers(peer: PeerLoop, tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with aioquic_client(peer, tmp_path) as (client, _):
            protocol = client.protocol
            data = request(
                "zvm.transfer",
                [b"\x01" * 20],
                {"amount": 10**30},
                metadata={"k": b"v"},
                timeout=5.0,
            )
            frames = await peer.run(aq_call(protocol.open_stream(), data))
            assert frames == [
                (0, {"to": b"\x01" * 20, "amount": 10**30, "fee": -(2**70), "meta": {"k": b"v"}}),
                (2, {"status": 0}),
            ]
            # an application error: trailer only
            frames = await peer.run(
                aq_call(protocol.open_stream(), request("zvm.transfer", [b""], {"amount": -1}))
            )
            assert frames == [(2, {"status": 11, "message": "negative amount", "details": -1})]
            # an unknown method, then a malformed request: the connection lives on
            frames = await peer.run(aq_call(protocol.open_stream(), request("zvm.nope", [], {})))
            assert frames[0][0] == 2 and frames[0][1]["status"] == 12
            frames = await peer.run(aq_call(protocol.open_stream(), b"\x09\x00\x00\x00\x00"))
            assert frames[0][0] == 2 and frames[0][1]["status"] == 3
            # a subscription resumed after a cursor
            data = request("zvm.blocks", [], {}, kind="events", after=2)
            frames = await peer.run(aq_call(protocol.open_stream(), data))
            assert frames == [(0, [{"height": 3}, 3]), (0, [{"height": 4}, 4]), (2, {"status": 0})]


async def test_aioquic_client_reset_cancels_the_handler(peer: PeerLoop, tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with aioquic_client(peer, tmp_path) as (client, cancelled):
            protocol = client.protocol

            async def call_then_reset() -> None:
                stream = protocol.open_stream()
                stream.write(request("zvm.hang", [], {}), end_stream=True)
                protocol._quic.stop_stream(stream.stream_id, 0x1)  # STOP_SENDING, CANCELLED
                protocol.transmit()

            await peer.run(call_then_reset())
            await cancelled.wait()
