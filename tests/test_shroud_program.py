"""A Shroud-style program using the gRPC-style server and client, run through the shim.

The program is written as a GhostWire user would write it, against
``ghostwire`` imported from the shim (the one line a port changes): routes
with ``:name`` parameters and query strings, middleware in both ``next``
forms, JSON responses, a gRPC-style service its routes call (``unaryCall``
and ``call`` with ``CallOptions``), and a WebSocket event stream backed by
the service's event channel. It is checked

* over HTTP/1.1 with httpx, and the WebSocket stream with wsproto's client;
* over HTTP/3 with aioquic's HTTP/3 client;

on loopback, bounded by ``trio.fail_after``.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import trio
from test_shroud_serve import Certs, WsClient, full_config, http_url, https_url, running
from wsproto.events import AcceptConnection, CloseConnection

import ghostwire.shroud as ghostwire  # the one line a ported program changes

HOST = "127.0.0.1"
TIMEOUT = 30

# -- the program -----------------------------------------------------------------------------


def bank_server(config: ghostwire.GrpcConfig) -> ghostwire.GrpcServer:
    server = ghostwire.createGrpcServer(None, config)
    bank = ghostwire.GrpcService.init(None, "bank.Bank")
    accounts = {"alice": 100, "bob": 7}

    def balance(req: Any, res: Any) -> None:
        who = json.loads(req.message)["who"]
        if who not in accounts:
            res.setError(ghostwire.GrpcStatus.not_found, f"no account {who}")
            return
        res.setMessage(json.dumps({"who": who, "balance": accounts[who]}))

    async def blocks(req: Any) -> AsyncIterator[Any]:
        request = json.loads(req.message)
        for number in range(request["from"], request["from"] + 3):
            yield {"chain": request["chain"], "block": number}

    bank.addMethod("Balance", balance)
    bank.addEvents("Blocks", blocks)
    server.addService(bank)
    server.addService(ghostwire.EchoService.createService())
    return server


def web_server(
    config: ghostwire.UnifiedServerConfig, bank: ghostwire.GrpcClient
) -> ghostwire.UnifiedServer:
    server = ghostwire.createUnifiedServer(None, config)

    def timing(req: Any, res: Any, next: Any) -> None:  # the code's MiddlewareFn
        next()
        res.setHeader("X-Handled-Status", str(res.status))

    async def auth(req: Any, res: Any, next: Any) -> None:  # the documented MiddlewareFn
        if req.path.startswith("/admin") and req.getHeader("Authorization") != "Bearer s3cret":
            res.setStatus(401)
            res.jsonObject({"error": "unauthorized"})
            return
        await next(req, res)

    async def account(req: Any, res: Any) -> None:  # a gRPC-style call from a route
        try:
            reply = await bank.unaryCall("bank.Bank", "Balance", {"who": req.getParam("who")})
        except ghostwire.GrpcCallFailed as exc:
            res.setStatus(404)
            res.jsonObject({"error": exc.message, "grpc_status": exc.status.toString()})
            return
        body = json.loads(reply)
        body["fields"] = req.getQuery("fields")
        body["protocol"] = req.protocol.value
        res.jsonObject(body)

    async def echo(req: Any, res: Any) -> None:
        call = await bank.call("echo.EchoService", "Echo", req.body, ghostwire.CallOptions())
        res.jsonObject({"status": call.status.toString(), "echo": call.response_data.decode()})

    def admin(req: Any, res: Any) -> None:
        res.jsonObject({"admin": True})

    def chain_request(req: Any) -> dict[str, Any]:
        return {"chain": req.getParam("chain"), "from": int(req.getQuery("from") or 0)}

    server.use(timing)
    server.addMiddleware(auth)
    server.get("/accounts/:who", account)
    server.post("/echo", echo)
    server.get("/admin", admin)
    server.websocket(
        "/blocks/:chain", ghostwire.grpcEvents(bank, "bank.Bank", "Blocks", chain_request)
    )
    return server


# -- running it ------------------------------------------------------------------------------


@asynccontextmanager
async def program(
    certs: Certs, web_config: ghostwire.UnifiedServerConfig
) -> AsyncIterator[ghostwire.UnifiedServer]:
    grpc_config = ghostwire.GrpcConfig(
        address=HOST, port=0, cert_file=certs.cert_file, key_file=certs.key_file
    )
    grpc_server = bank_server(grpc_config)
    async with trio.open_nursery() as nursery:
        await nursery.start(grpc_server.serve)
        client_config = ghostwire.GrpcClientConfig(ca_file=certs.ca_file, server_name="localhost")
        bank = ghostwire.GrpcClient.init(None, f"{HOST}:{grpc_server.port}", client_config)
        async with running(web_server(web_config, bank)) as server:
            yield server
        grpc_server.stop()


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    from ghostwire.certs import CertificateAuthority

    path = tmp_path_factory.mktemp("shroud-program-certs")
    ca = CertificateAuthority.create("ghostwire shroud program test CA")
    ca.write_pem(path / "ca.pem")
    ca.issue(["localhost", HOST]).write_pem(path / "cert.pem", path / "key.pem")
    return Certs(str(path / "ca.pem"), str(path / "cert.pem"), str(path / "key.pem"))


async def check_over_httpx(client: httpx.AsyncClient, url: Any, protocol: str) -> None:
    r = await client.get(url("/accounts/alice?fields=balance"))
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json; charset=utf-8"
    body = {"who": "alice", "balance": 100, "fields": "balance", "protocol": protocol}
    assert r.json() == body
    assert r.headers["x-handled-status"] == "200"

    r = await client.get(url("/accounts/carol"))
    assert r.status_code == 404
    assert r.json() == {"error": "no account carol", "grpc_status": "NOT_FOUND"}
    assert r.headers["x-handled-status"] == "404"

    r = await client.post(url("/echo"), content=b"over grpc")
    assert r.json() == {"status": "OK", "echo": "over grpc"}

    r = await client.get(url("/admin"))
    assert r.status_code == 401
    r = await client.get(url("/admin"), headers={"authorization": "Bearer s3cret"})
    assert r.json() == {"admin": True}


async def test_program_over_http1_with_httpx(certs: Certs) -> None:
    with trio.fail_after(TIMEOUT):
        async with program(certs, full_config(certs)) as server:
            async with httpx.AsyncClient() as client:
                await check_over_httpx(client, lambda p: http_url(server, p), "http1_1")
            context = ssl.create_default_context(cafile=certs.ca_file)
            async with httpx.AsyncClient(verify=context) as client:
                await check_over_httpx(client, lambda p: https_url(server, p), "http1_1")


async def test_program_websocket_event_stream_from_the_rpc_channel(certs: Certs) -> None:
    config = ghostwire.UnifiedServerConfig(address=HOST, port=0)
    with trio.fail_after(TIMEOUT):
        async with program(certs, config) as server:
            assert server.http1_address is not None
            port = server.http1_address[1]
            for _ in range(2):  # each WebSocket gets its own subscription
                client, accepted = await WsClient.connect(port, "/blocks/main?from=40")
                assert isinstance(accepted, AcceptConnection)
                messages = [json.loads((await client.next_event()).data) for _ in range(3)]
                assert [m["data"] for m in messages] == [
                    {"chain": "main", "block": 40},
                    {"chain": "main", "block": 41},
                    {"chain": "main", "block": 42},
                ]
                closing = await client.next_event()  # the channel ended: a normal close
                assert isinstance(closing, CloseConnection) and closing.code == 1000
                await client.send(closing.response())
                await client.stream.aclose()


@pytest.mark.interop
async def test_program_over_http3_with_aioquic(certs: Certs, peer: Any) -> None:
    from aioquic_h3_peer import H3PeerClient
    from aioquic_peer import peer_configuration

    config = full_config(certs, enable_tls=False, http3_port=0)
    with trio.fail_after(TIMEOUT):
        async with program(certs, config) as server:
            assert server.http3_address is not None
            configuration = peer_configuration(
                is_client=True, alpn=["h3"], cafile=certs.ca_file, server_name="localhost"
            )
            client = await peer.run(
                H3PeerClient.connect(HOST, server.http3_address[1], configuration)
            )
            try:
                r = await peer.run(client.request("GET", "/accounts/bob?fields=all"))
                assert r.status == 200
                assert json.loads(r.body) == {
                    "who": "bob",
                    "balance": 7,
                    "fields": "all",
                    "protocol": "http3",
                }
                assert r.header("x-handled-status") == "200"
                r = await peer.run(client.request("GET", "/accounts/zed"))
                assert r.status == 404 and json.loads(r.body)["grpc_status"] == "NOT_FOUND"
                r = await peer.run(client.request("POST", "/echo", body=b"h3 to grpc"))
                assert json.loads(r.body) == {"status": "OK", "echo": "h3 to grpc"}
                r = await peer.run(
                    client.request("GET", "/admin", headers=[("authorization", "Bearer s3cret")])
                )
                assert (r.status, json.loads(r.body)) == (200, {"admin": True})
                r = await peer.run(client.request("GET", "/blocks/main"))
                assert r.status == 426  # WebSocket routes live on HTTP/1.1
            finally:
                await peer.run(client.close())


async def test_websocket_route_over_a_native_rpc_channel_resumes_by_cursor() -> None:
    from test_rpc_support import rpc_client_config
    from test_rpc_support import running as rpc_running

    import ghostwire.rpc as rpc
    from ghostwire.shroud.zvm_service import InMemoryChain, zvm_services

    alice = bytes([0xA1]) * 20
    chain = InMemoryChain(balances={alice: 10})
    deployed = chain.deploy_contract(b"\x01", b"", 10**6, 0, alice)
    contract = deployed["contract_address"]
    for data in (b"\x0a", b"\x0b", b"\x0c"):
        chain.call_contract(bytes.fromhex(contract), data, 10**6, alice, 0)

    def logs_of(req: Any) -> dict[str, Any]:
        return {"contract_address": req.getParam("address")}

    with trio.fail_after(TIMEOUT):
        async with rpc_running(zvm_services(chain)) as (_server, listener):
            address = f"127.0.0.1:{listener.port}"
            async with rpc.connect(address, config=rpc_client_config()) as rpc_client:
                web = ghostwire.createUnifiedServer(
                    ghostwire.UnifiedServerConfig(address=HOST, port=0)
                )
                web.websocket(
                    "/logs/:address",
                    ghostwire.rpcEvents(rpc_client, "zvm.contract_events", logs_of),
                )
                async with running(web):
                    assert web.http1_address is not None
                    port = web.http1_address[1]
                    client, accepted = await WsClient.connect(port, f"/logs/{contract}")
                    assert isinstance(accepted, AcceptConnection)
                    seen = [json.loads((await client.next_event()).data) for _ in range(4)]
                    assert [m["data"]["event_name"] for m in seen] == ["Deployed"] + ["Call"] * 3
                    assert [m["data"]["data"] for m in seen[1:]] == ["0a", "0b", "0c"]
                    cursor = seen[1]["cursor"]
                    await client.stream.aclose()  # the browser goes away mid-stream

                    # it reconnects with the last cursor it saw: the rest, then live events
                    client, _ = await WsClient.connect(port, f"/logs/{contract}?after={cursor}")
                    resumed = [json.loads((await client.next_event()).data) for _ in range(2)]
                    assert [m["data"]["data"] for m in resumed] == ["0b", "0c"]
                    chain.call_contract(bytes.fromhex(contract), b"\x0d", 10**6, alice, 0)
                    live = json.loads((await client.next_event()).data)
                    assert live["data"]["data"] == "0d" and live["cursor"] > resumed[-1]["cursor"]
                    await client.stream.aclose()
