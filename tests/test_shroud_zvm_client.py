"""The shim's ZVM client against the ZVM-style RPC service (toy in-memory chain).

Over loopback QUIC: every ZVM operation, typed failures, the event stream
(live, ended by the client, resumed from a cursor), ghostd and walletd on
separate servers; and the same backend answering ZVM's framed envelopes
through serve_zvm_stream, so old and new clients see one chain.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from test_rpc_support import rpc_client_config, running

import ghostwire.rpc as rpc
from ghostwire.shroud.zvm_client import (
    ContractCallRequest,
    ContractDeployRequest,
    ServiceEndpoint,
    TransactionRequest,
    ZvmClient,
    ZvmClientConfig,
    ZvmError,
)
from ghostwire.shroud.zvm_serve import serve_zvm_stream
from ghostwire.shroud.zvm_service import InMemoryChain, zvm_frame_handler, zvm_services
from ghostwire.shroud.zvm_wire import (
    FrameDecoder,
    MessageType,
    QuicRequest,
    QuicResponse,
    encode_request_frame,
    payload_string,
)

TIMEOUT = 30
ALICE = bytes([0xA1]) * 20
BOB = "b0" * 20


@asynccontextmanager
async def node(chain: InMemoryChain) -> AsyncIterator[ZvmClient]:
    async with running(zvm_services(chain)) as (_server, listener):
        endpoint = f"127.0.0.1:{listener.port}"
        config = ZvmClientConfig(ghostd_endpoint=endpoint, walletd_endpoint=endpoint)
        yield ZvmClient(config, quic_config=rpc_client_config())


async def test_every_operation_over_one_connection() -> None:
    chain = InMemoryChain(balances={ALICE: 1_000})
    with trio.fail_after(TIMEOUT):
        async with node(chain) as client, client:
            assert await client.healthCheck() is True
            assert await client.health_check(ServiceEndpoint.walletd) is True

            deployed = await client.deployContract(
                ContractDeployRequest(bytecode=b"\x60\x80", deployer=ALICE, value=100)
            )
            assert len(deployed.contract_address) == 40 and deployed.gas_used == 21000 + 2 * 16
            assert len(deployed.transaction_hash) == 64
            assert await client.getBalance(ALICE) == 900
            assert await client.get_balance(deployed.contract_address) == 100

            result = await client.callContract(
                ContractCallRequest(
                    contract_address=deployed.contract_address,
                    function_data=b"\xa9\x05\x9c\xbb\x01",
                    caller=ALICE,
                )
            )
            assert result.success and result.returnBytes() == b"\xa9\x05\x9c\xbb\x01"

            tx = await client.submitTransaction({"from": ALICE.hex(), "to": BOB, "value": 250})
            assert len(tx.transaction_hash) == 64 and tx.gas_used == 21000
            assert await client.getBalance("0x" + BOB) == 250
            tx = await client.submit_transaction(
                TransactionRequest(from_=ALICE, to=BOB, value=1, nonce=2)
            )
            assert await client.getBalance(ALICE) == 649

            wallet = await client.createWallet("savings", "standard")
            assert wallet.id == "wallet-1" and len(wallet.address) == 40
            signature = await client.signTransaction(wallet.id, "transfer 10 to bob")
            public = Ed25519PublicKey.from_public_bytes(bytes.fromhex(wallet.public_key))
            public.verify(bytes.fromhex(signature), b"transfer 10 to bob")  # raises if wrong


async def test_failures_are_typed() -> None:
    chain = InMemoryChain(balances={ALICE: 10})
    with trio.fail_after(TIMEOUT):
        async with node(chain) as client:  # no shared connection: one per call
            with pytest.raises(ZvmError) as failed:
                await client.submitTransaction(from_=ALICE, to=BOB, value=11)
            assert failed.value.status is rpc.Status.FAILED_PRECONDITION
            assert failed.value.operation == "submitTransaction"
            with pytest.raises(ZvmError) as failed:
                await client.callContract(contract_address=BOB, caller=ALICE)
            assert failed.value.status is rpc.Status.NOT_FOUND
            with pytest.raises(ZvmError) as failed:
                await client.deployContract(bytecode=b"\x00" * 100, deployer=ALICE, gas_limit=100)
            assert failed.value.status is rpc.Status.RESOURCE_EXHAUSTED
            with pytest.raises(ZvmError) as failed:
                await client.signTransaction("wallet-9", "x")
            assert failed.value.status is rpc.Status.NOT_FOUND
            with pytest.raises(ZvmError) as failed:
                await client.submitTransaction(from_=ALICE, to=BOB, data="zz")
            assert failed.value.status is rpc.Status.INVALID_ARGUMENT
    # the server is gone: the health check says so instead of raising
    assert await client.healthCheck() is False
    with pytest.raises(ZvmError) as failed:
        await client.getBalance(ALICE)
    assert failed.value.status is rpc.Status.UNAVAILABLE


async def test_contract_event_stream_live_closed_and_resumed() -> None:
    chain = InMemoryChain(balances={ALICE: 1_000})
    with trio.fail_after(TIMEOUT):
        async with node(chain) as client, client:
            deployed = await client.deployContract(bytecode=b"\x01", deployer=ALICE)
            contract = deployed.contract_address
            other = await client.deployContract(bytecode=b"\x02", deployer=ALICE)
            async with client.streamContractEvents(contract) as stream:
                first = await stream.next()
                assert first is not None and first.event_name == "Deployed"
                # events of another contract are not delivered; live ones are
                for data in (b"\x01", b"\x02"):
                    await client.callContract(
                        contract_address=other.contract_address, function_data=b"\xff", caller=ALICE
                    )
                    await client.callContract(
                        contract_address=contract, function_data=data, caller=ALICE
                    )
                    event = await stream.next()
                    assert event is not None and event.event_name == "Call"
                    assert event.data == data.hex() and event.topics[0] == ALICE.hex()
                    assert event.block_number == chain.block_number
                cursor = stream.last_cursor
            assert await stream.next() is None  # closed: ZVM's null

            await client.submitTransaction(from_=ALICE, to=contract, value=5)
            # the awaited form, resumed after the last event seen
            stream = await client.streamContractEvents(contract, after=cursor)
            try:
                event = await stream.next()
                assert event is not None and event.event_name == "Transfer"
                assert int(event.data, 16) == 5 and event.cursor > cursor
            finally:
                await stream.close()


async def test_ghostd_and_walletd_on_separate_servers() -> None:
    chain = InMemoryChain(balances={ALICE: 5})
    ghostd_only = zvm_services(chain)[:1]
    walletd_only = zvm_services(chain)[1:]
    with trio.fail_after(TIMEOUT):
        async with running(ghostd_only) as (_g, ghostd), running(walletd_only) as (_w, walletd):
            config = ZvmClientConfig(
                ghostd_endpoint=f"127.0.0.1:{ghostd.port}",
                walletd_endpoint=f"127.0.0.1:{walletd.port}",
            )
            async with ZvmClient(config, quic_config=rpc_client_config()) as client:
                assert await client.getBalance(ALICE) == 5
                wallet = await client.createWallet("w")
                assert len(await client.signTransaction(wallet.id, "x")) == 128


# -- the same chain for clients that still frame ZVM envelopes -------------------------------


async def test_framed_envelopes_reach_the_same_chain() -> None:
    chain = InMemoryChain(balances={ALICE: 70})
    handler = zvm_frame_handler(chain)
    client_end, server_end = trio.testing.memory_stream_pair()

    def frame(kind: MessageType, request_id: int, payload: Any) -> bytes:
        body = payload_string(payload) if not isinstance(payload, str) else payload
        return encode_request_frame(QuicRequest(kind, request_id, body, 1_700_000_000))

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve_zvm_stream, server_end, handler)
            await client_end.send_all(
                frame(MessageType.HEALTH_CHECK, 1, "{}")
                + frame(MessageType.BALANCE_QUERY, 2, {"address": ALICE.hex()})
                + frame(
                    MessageType.WALLET_TRANSACTION, 3, {"from": ALICE.hex(), "to": BOB, "value": 20}
                )
                + frame(MessageType.BALANCE_QUERY, 4, {"address": BOB})
                + frame(MessageType.BALANCE_QUERY, 5, {"address": "nothex"})
                + frame(MessageType.CONSENSUS_MESSAGE, 6, "{}")
                + frame(
                    MessageType.WALLET_CREATE,
                    7,
                    {"name": "n", "account_type": "t", "use_zquic": True},
                )
            )
            await client_end.send_eof()
            decoder = FrameDecoder()
            responses: list[QuicResponse] = []
            while len(responses) < 7:
                data = await client_end.receive_some(65536)
                assert data
                decoder.receive_data(data)
                while (got := decoder.next_frame()) is not None:
                    responses.append(QuicResponse.decode(got.body))
    by_id = {r.request_id: r for r in responses}
    assert by_id[1].success and by_id[1].payload_json() == {"status": "healthy"}
    assert by_id[2].payload_json() == {"balance": 70}
    assert by_id[3].success and len(by_id[3].payload_json()["transaction_hash"]) == 64
    assert by_id[4].payload_json() == {"balance": 20}
    assert not by_id[5].success and by_id[5].error_message == "address is not an address"
    assert not by_id[6].success and "CONSENSUS_MESSAGE" in (by_id[6].error_message or "")
    assert by_id[7].success and json.loads(by_id[7].payload)["wallet"]["id"] == "wallet-1"
    assert chain.balances[ALICE] == 50


# -- ZVM's Shroud-era client: POST /api and ws://.../stream ----------------------------------


async def test_shroud_era_api_and_stream_routes() -> None:
    import httpx
    from test_shroud_serve import WsClient
    from wsproto.events import AcceptConnection, CloseConnection, TextMessage

    import ghostwire.shroud as ghostwire
    from ghostwire.shroud.zvm_legacy import zvm_api_handler, zvm_stream_handler

    chain = InMemoryChain(balances={ALICE: 30})
    deployed = chain.deploy_contract(b"\x01", b"", 10**6, 0, ALICE)
    contract = deployed["contract_address"]
    server = ghostwire.UnifiedServer(address="127.0.0.1", port=0)
    server.post("/api", zvm_api_handler(chain))
    server.websocket("/stream", zvm_stream_handler(chain))
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve)
            assert server.http1_address is not None
            port = server.http1_address[1]
            url = f"http://127.0.0.1:{port}/api"
            envelope = QuicRequest(
                MessageType.BALANCE_QUERY, 9, payload_string({"address": ALICE.hex()}), 0
            )
            async with httpx.AsyncClient() as http:
                r = await http.post(url, content=envelope.encode())
                assert r.status_code == 200 and r.headers["content-type"].startswith(
                    "application/json"
                )
                reply = QuicResponse.decode(r.content)
                assert reply.success and reply.request_id == 9
                assert reply.payload_json() == {"balance": 30}
                r = await http.post(url, content=b"{not json")
                assert r.status_code == 400 and not QuicResponse.decode(r.content).success

            client, accepted = await WsClient.connect(port, "/stream")
            assert isinstance(accepted, AcceptConnection)
            request = {"contract_address": contract, "stream_type": "events"}
            await client.send(TextMessage(data=json.dumps(request)))
            first = json.loads((await client.next_event()).data)
            assert first["event_name"] == "Deployed"
            chain.call_contract(bytes.fromhex(contract), b"\x42", 10**6, ALICE, 0)
            live = json.loads((await client.next_event()).data)
            assert (live["event_name"], live["data"]) == ("Call", "42")
            await client.send(CloseConnection(code=1000))
            assert isinstance(await client.next_event(), CloseConnection)
            await client.stream.aclose()

            client, _ = await WsClient.connect(port, "/stream")
            await client.send(TextMessage(data='{"contract_address": "nope"}'))
            closing = await client.next_event()
            assert isinstance(closing, CloseConnection) and closing.code == 1008
            await client.stream.aclose()
            server.stop()
