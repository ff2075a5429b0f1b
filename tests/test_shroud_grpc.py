"""The shim's gRPC-style server and client, over ghostwire.rpc on loopback QUIC.

GrpcClient <-> GrpcServer: both call forms, unaryCall's JSON encoding, status
names and the original's routing errors, metadata and trailers, the health
service, retries under the original's RetryPolicy (only where safe), stats;
plus the pure parts (GrpcStatus, GrpcMessage framing, configs).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
import trio

import ghostwire.rpc as rpc
import ghostwire.shroud as ghostwire
from ghostwire.certs import CertificateAuthority
from ghostwire.shroud.grpc import GrpcMessage, GrpcStatus
from ghostwire.shroud.grpc_types import InvalidGrpcMessage, decode_messages

HOST = "127.0.0.1"
TIMEOUT = 30


@dataclass
class Certs:
    ca_file: str
    cert_file: str
    key_file: str


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    path = tmp_path_factory.mktemp("shroud-grpc-certs")
    ca = CertificateAuthority.create("ghostwire shroud grpc test CA")
    ca.write_pem(path / "ca.pem")
    ca.issue(["localhost", HOST]).write_pem(path / "cert.pem", path / "key.pem")
    return Certs(str(path / "ca.pem"), str(path / "cert.pem"), str(path / "key.pem"))


# -- a service written as a GhostWire user would ---------------------------------------------


class Failure(Exception):
    pass


def bank_service() -> ghostwire.GrpcService:
    svc = ghostwire.GrpcService.init(None, "bank.Bank")
    balances = {"alice": 100}
    flaky = {"left": 2}

    def balance(req: Any, res: Any) -> None:  # plain function
        who = json.loads(req.message)["who"]
        if who not in balances:
            res.setError(ghostwire.GrpcStatus.not_found, f"no account {who}")
            return
        res.setMessage(json.dumps({"who": who, "balance": balances[who]}))

    async def whoami(req: Any, res: Any) -> None:  # async def, metadata both ways
        await trio.lowlevel.checkpoint()
        res.metadata.set("x-server", "bank")
        res.setMessage(req.metadata.get("authorization") or "anonymous")

    def broken(req: Any, res: Any) -> None:
        raise Failure("boom")

    def denied(req: Any, res: Any) -> None:
        raise ghostwire.GrpcCallFailed(ghostwire.GrpcStatus.PERMISSION_DENIED, "go away")

    def unstable(req: Any, res: Any) -> None:  # UNAVAILABLE twice, then fine
        if flaky["left"] > 0:
            flaky["left"] -= 1
            res.setError(ghostwire.GrpcStatus.unavailable, "try again")
            return
        res.setMessage(b"finally")

    def always_down(req: Any, res: Any) -> None:
        res.setStatus(ghostwire.GrpcStatus.unavailable)

    def empty(req: Any, res: Any) -> None:
        pass

    async def blocks(req: Any) -> AsyncIterator[Any]:
        start = 0 if req.resume_after is None else req.resume_after + 1
        for number in range(start, start + 3):
            yield rpc.Event({"block": number}, cursor=number)

    svc.addMethod("Balance", balance)
    svc.addMethod("WhoAmI", whoami)
    svc.addMethod("Broken", broken)
    svc.addMethod("Denied", denied)
    svc.addMethod("Unstable", unstable, idempotent=True)
    svc.addMethod("AlwaysDown", always_down)
    svc.addMethod("Empty", empty)
    svc.addEvents("Blocks", blocks)
    return svc


@asynccontextmanager
async def serving(certs: Certs, **config: Any) -> AsyncIterator[ghostwire.GrpcServer]:
    options: dict[str, Any] = {"address": HOST, "port": 0}
    options.update(config)
    options.setdefault("cert_path", certs.cert_file)  # the documented names work too
    options.setdefault("key_path", certs.key_file)
    server = ghostwire.createGrpcServer(None, ghostwire.GrpcConfig(**options))
    server.addService(bank_service())
    server.addService(ghostwire.EchoService)
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        try:
            yield server
        finally:
            server.stop()


def client_for(server: ghostwire.GrpcServer, certs: Certs, **config: Any) -> ghostwire.GrpcClient:
    cfg = ghostwire.GrpcClientConfig(ca_file=certs.ca_file, server_name="localhost", **config)
    return ghostwire.GrpcClient.init(None, f"{HOST}:{server.port}", cfg)


# -- calls -----------------------------------------------------------------------------------


async def test_call_forms_statuses_and_routing_errors(certs: Certs) -> None:
    with trio.fail_after(TIMEOUT):
        async with serving(certs) as server:
            async with client_for(server, certs) as client:
                # the code's form: a GrpcCall, never raising for a status
                call = await client.call(
                    "echo.EchoService", "Echo", b"hello", ghostwire.CallOptions()
                )
                assert call.isSuccess() and call.response_data == b"hello"
                assert call.status is GrpcStatus.ok and call.trailers.get("grpc-status") == "0"
                # the documented form: bytes
                assert await client.call("echo.EchoService", "Echo", b"again") == b"again"
                # unaryCall JSON-encodes the request, as the original
                reply = await client.unaryCall("bank.Bank", "Balance", {"who": "alice"})
                assert json.loads(reply) == {"who": "alice", "balance": 100}

                call = await client.call("bank.Bank", "Balance", {"who": "bob"}, None)
                assert call.status is GrpcStatus.not_found
                assert call.status.toString() == "NOT_FOUND"
                assert call.trailers.get("grpc-message") == "no account bob"
                with pytest.raises(ghostwire.GrpcCallFailed) as failed:
                    await client.unaryCall("bank.Bank", "Balance", {"who": "bob"})
                assert failed.value.status is GrpcStatus.NOT_FOUND

                async def status_of(service: str, method: str, data: Any = b"x") -> Any:
                    result = await client.call(service, method, data, ghostwire.CallOptions())
                    return result.status, result.error_message

                assert await status_of("echo.EchoService", "Nope") == (
                    GrpcStatus.unimplemented,
                    "Method not implemented",
                )
                assert await status_of("no.Such", "Echo") == (
                    GrpcStatus.not_found,
                    "Service not found",
                )
                assert await status_of("bank.Bank", "Broken") == (GrpcStatus.internal, "Failure")
                assert await status_of("bank.Bank", "Denied") == (
                    GrpcStatus.permission_denied,
                    "go away",
                )
                # EchoService without a message: the original's INVALID_ARGUMENT
                call = await client.call("echo.EchoService", "Echo", None, ghostwire.CallOptions())
                assert call.status is GrpcStatus.invalid_argument
                assert call.error_message == "No message provided"
                with pytest.raises(ghostwire.NoResponseData):
                    await client.unaryCall("bank.Bank", "Empty", {})

                # metadata to the handler, response metadata back
                options = ghostwire.CallOptions(metadata={"Authorization": "Bearer t"})
                call = await client.call("bank.Bank", "WhoAmI", b"", options)
                assert call.response_data == b"Bearer t"
                assert call.metadata.get("x-server") == "bank"

            server.updateStats()
            stats = server.stats
            assert stats.requests_handled == 12 and stats.errors == 7
            assert stats.total_connections == 1 and stats.active_connections == 0


async def test_health_service_and_service_health(certs: Certs) -> None:
    with trio.fail_after(TIMEOUT):
        async with serving(certs) as server:
            async with client_for(server, certs) as client:
                reply = await client.call("grpc.health.v1.Health", "Check", b"")
                assert reply == b'{"status": "SERVING"}'  # the original's bytes
                assert await client.checkHealth() == "SERVING"
                assert await client.checkHealth("bank.Bank") == "SERVING"
                assert await client.checkHealth("no.Such") == "SERVICE_UNKNOWN"
                assert server.checkServiceHealth("bank.Bank") is ghostwire.grpc.HealthStatus.healthy

                server.setServing("bank.Bank", False)
                assert await client.checkHealth("bank.Bank") == "NOT_SERVING"
                assert (
                    server.checkServiceHealth("bank.Bank") is ghostwire.grpc.HealthStatus.unhealthy
                )
                # Watch (an event channel here): the current status, then each change
                async with client.subscribe(
                    "grpc.health.v1.Health", "Watch", {"service": "bank.Bank"}
                ) as watch:
                    first = await watch.receive()
                    assert json.loads(first.data) == {"status": "NOT_SERVING"}
                    server.setServing("bank.Bank", True)
                    second = await watch.receive()
                    assert json.loads(second.data) == {"status": "SERVING"}

            server.registerService("walletd", "127.0.0.1:9", ghostwire.grpc.ServiceType.walletd)
            assert [s.name for s in server.getServices()] == ["walletd"]
            assert server.checkServiceHealth("walletd") is ghostwire.grpc.HealthStatus.unknown
            server.unregisterService("walletd")
            assert server.getServices() == []


async def test_health_check_can_be_turned_off(certs: Certs) -> None:
    with trio.fail_after(TIMEOUT):
        async with serving(certs, enable_health_check=False) as server:
            async with client_for(server, certs) as client:
                call = await client.call("grpc.health.v1.Health", "Check", b"", None)
                assert (call.status, call.error_message) == (
                    GrpcStatus.not_found,
                    "Service not found",
                )


async def test_event_channel_with_resume_cursor(certs: Certs) -> None:
    with trio.fail_after(TIMEOUT):
        async with serving(certs) as server:
            client = client_for(server, certs)  # no shared connection: one per subscription
            async with client.subscribe("bank.Bank", "Blocks") as events:
                seen = [event.data["block"] async for event in events]
                assert seen == [0, 1, 2] and events.last_cursor == 2
            async with client.subscribe("bank.Bank", "Blocks", after=2) as events:
                assert [event.data["block"] async for event in events] == [3, 4, 5]


# -- retries ---------------------------------------------------------------------------------


def quick_retries(**overrides: Any) -> ghostwire.RetryPolicy:
    options: dict[str, Any] = {"initial_backoff_ms": 1, "max_backoff_ms": 2}
    options.update(overrides)
    return ghostwire.RetryPolicy(**options)


async def test_retries_follow_the_policy_only_where_safe(certs: Certs) -> None:
    with trio.fail_after(TIMEOUT):
        async with serving(certs) as server:
            async with client_for(server, certs) as client:
                # non-idempotent: one attempt only, its own status
                options = ghostwire.CallOptions(retry_policy=quick_retries())
                call = await client.call("bank.Bank", "AlwaysDown", b"", options)
                assert (call.status, call.attempts) == (GrpcStatus.unavailable, 1)
                assert call.error_message == ""

                # idempotent: retried until the attempts run out -> the original's message
                options = ghostwire.CallOptions(retry_policy=quick_retries(), idempotent=True)
                call = await client.call("bank.Bank", "AlwaysDown", b"", options)
                assert (call.status, call.attempts) == (GrpcStatus.unavailable, 3)
                assert call.error_message == "All retry attempts failed"

                # UNAVAILABLE twice, then OK on the third attempt
                call = await client.call("bank.Bank", "Unstable", b"", options)
                assert call.isSuccess() and call.attempts == 3
                assert call.response_data == b"finally"

                # a status not in retryable_status_codes is final
                call = await client.call("bank.Bank", "Denied", b"", options)
                assert (call.status, call.attempts) == (GrpcStatus.permission_denied, 1)


async def test_no_server_is_retried_then_unavailable(certs: Certs) -> None:
    async with serving(certs) as server:
        port = server.port
    with trio.fail_after(TIMEOUT):
        cfg = ghostwire.GrpcClientConfig(
            ca_file=certs.ca_file,
            server_name="localhost",
            max_retry_attempts=2,
            initial_backoff_ms=1,
            max_backoff_ms=2,
        )
        client = ghostwire.GrpcClient(f"{HOST}:{port}", cfg)
        call = await client.call("echo.EchoService", "Echo", b"x", ghostwire.CallOptions())
        # never sent: retried even though Echo was not marked idempotent by the caller
        assert (call.status, call.attempts) == (GrpcStatus.unavailable, 2)
        assert call.error_message == "All retry attempts failed"
        with pytest.raises(ghostwire.GrpcCallFailed):
            await client.unaryCall("echo.EchoService", "Echo", "x")


async def test_per_attempt_timeout_is_deadline_exceeded(certs: Certs) -> None:
    server_cfg: dict[str, Any] = {}
    started = trio.Event()

    async def slow(req: Any, res: Any) -> None:
        started.set()
        await trio.sleep_forever()

    with trio.fail_after(TIMEOUT):
        async with serving(certs, **server_cfg) as server:
            svc = ghostwire.GrpcService("slow.Slow")
            svc.addMethod("Wait", slow)
            # services added while running take effect at the next serve(); use a second server
            second = ghostwire.GrpcServer(
                ghostwire.GrpcConfig(
                    address=HOST, port=0, cert_file=certs.cert_file, key_file=certs.key_file
                )
            )
            second.addService(svc)
            async with trio.open_nursery() as nursery:
                await nursery.start(second.serve)
                async with client_for(second, certs) as client:
                    options = ghostwire.CallOptions(timeout_ms=200)
                    call = await client.call("slow.Slow", "Wait", b"", options)
                    assert started.is_set()
                    assert call.status is GrpcStatus.deadline_exceeded
                second.stop()
            assert server.port is not None


# -- blocking start() for scripts ------------------------------------------------------------


def test_blocking_start_stopped_from_another_thread(certs: Certs) -> None:
    import threading

    server = ghostwire.GrpcServer(
        ghostwire.GrpcConfig(
            address=HOST, port=0, cert_file=certs.cert_file, key_file=certs.key_file
        )
    )
    server.addService(ghostwire.EchoService.createService())
    thread = threading.Thread(target=server.start, daemon=True)
    thread.start()
    assert server.waitUntilReady(TIMEOUT)

    async def check() -> bytes:
        with trio.fail_after(TIMEOUT):
            client = client_for(server, certs)
            result: bytes = await client.call("echo.EchoService", "Echo", b"from a script")
            return result

    assert trio.run(check) == b"from a script"
    blocking = ghostwire.BlockingGrpcClient.init(
        None,
        f"{HOST}:{server.port}",
        ghostwire.GrpcClientConfig(ca_file=certs.ca_file, server_name="localhost"),
    )
    assert blocking.unaryCall("echo.EchoService", "Echo", b"blocking") == b"blocking"
    assert blocking.checkHealth() == "SERVING"
    server.stop()
    thread.join(TIMEOUT)
    assert not thread.is_alive() and not server.isRunning()


def test_missing_certificate_is_a_config_error() -> None:
    server = ghostwire.GrpcServer(ghostwire.GrpcConfig(port=0))
    with pytest.raises(ghostwire.ConfigError, match="cert_file"):
        server.build_rpc_server()


# -- the pure parts --------------------------------------------------------------------------


def test_status_names_and_codes() -> None:
    names = [
        "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
        "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
        "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
        "UNAUTHENTICATED",
    ]  # fmt: skip
    for code, name in enumerate(names):
        status = GrpcStatus(code)
        assert status.toString() == name and status.name == name.lower()
        assert GrpcStatus.of(name) is status and GrpcStatus.of(name.lower()) is status
        assert int(status.to_rpc()) == code and status.to_rpc().name == name
    assert len(GrpcStatus) == 17
    with pytest.raises(ValueError):
        GrpcStatus.of(17)


def test_grpc_message_framing_against_hand_written_bytes() -> None:
    # [u8 compressed][u32 big-endian length][data]
    assert GrpcMessage(b"hi").encode() == b"\x00\x00\x00\x00\x02hi"
    assert GrpcMessage(b"", compressed=True).encode() == b"\x01\x00\x00\x00\x00"
    message = GrpcMessage.decode(b"\x01\x00\x00\x01\x00" + b"z" * 256)
    assert message.compressed and message.data == b"z" * 256
    stream = b"\x00\x00\x00\x00\x01a" + b"\x00\x00\x00\x00\x02bc"
    assert [m.data for m in decode_messages(stream)] == [b"a", b"bc"]
    assert GrpcMessage.decode_prefix(b"\x00\x00\x00\x00\x05abc") == (
        None,
        b"\x00\x00\x00\x00\x05abc",
    )
    for bad in (b"\x00\x00\x00\x00\x05abc", b"\x02\x00\x00\x00\x00", b"\x00\x00\x00\x00\x00x"):
        with pytest.raises(InvalidGrpcMessage):
            GrpcMessage.decode(bad)


def test_configs_keep_the_original_defaults() -> None:
    config = ghostwire.GrpcConfig()
    assert (config.address, config.port, config.max_message_size) == ("0.0.0.0", 9090, 4 << 20)
    assert config.enable_health_check and config.enable_reflection
    assert config.transport is ghostwire.grpc.Transport.http2
    assert ghostwire.GrpcConfig(tls_cert_path="c", tls_key_path="k").key_file == "k"
    with pytest.raises(ghostwire.ConfigError):
        ghostwire.GrpcConfig(cert_file="a", cert_path="b")
    with pytest.raises(ghostwire.ConfigError):
        ghostwire.GrpcConfig(no_such_field=1)

    policy = ghostwire.RetryPolicy()
    assert (policy.max_attempts, policy.initial_backoff_ms, policy.max_backoff_ms) == (
        3,
        1000,
        30000,
    )
    assert policy.backoff_multiplier == 1.5
    assert policy.retryable_status_codes == [GrpcStatus.unavailable, GrpcStatus.deadline_exceeded]
    mapped = policy.to_rpc()
    assert mapped.max_attempts == 3 and mapped.retryable_statuses == {14, 4}
    assert (mapped.backoff.initial, mapped.backoff.multiplier, mapped.backoff.max_backoff) == (
        1.0,
        1.5,
        30.0,
    )
    with pytest.raises(ghostwire.ConfigError):
        ghostwire.RetryPolicy(max_attempts=6).to_rpc()

    client = ghostwire.GrpcClientConfig()
    assert (client.max_connections, client.timeout_ms, client.max_retry_attempts) == (10, 30000, 3)
    assert ghostwire.grpc.parse_target("example.org") == ("example.org", 9090)
    assert ghostwire.grpc.parse_target("[::1]:50051") == ("::1", 50051)
    options = ghostwire.CallOptions()
    assert options.timeout_ms is None and options.retry_policy is None and options.compression


# -- the same methods for native callers -----------------------------------------------------


async def test_native_rpc_and_http3_callers_reach_grpc_methods(certs: Certs) -> None:
    import ghostwire.quic as quic
    from ghostwire.http3 import Client
    from ghostwire.rpc.codec import decode, encode

    with trio.fail_after(TIMEOUT):
        async with serving(certs) as server:
            address = f"{HOST}:{server.port}"
            config = quic.ClientConfig(
                alpn=[rpc.ALPN], cafile=certs.ca_file, server_name="localhost"
            )
            async with rpc.connect(address, config=config) as client:
                assert await client.call("echo.EchoService.Echo", b"native") == b"native"
                assert await client.call("health.check") == "SERVING"
                with pytest.raises(rpc.RpcError) as failed:
                    await client.call("bank.Bank.Nope")
                assert failed.value.status is rpc.Status.UNIMPLEMENTED

            h3_config = quic.ClientConfig(
                alpn=["h3"], cafile=certs.ca_file, server_name="localhost"
            )
            async with Client(h3_config, timeout=20) as h3:
                response = await h3.post(
                    f"https://{HOST}:{server.port}/echo.EchoService/Echo",
                    content=encode({"message": b"over h3"}),
                    headers=[("content-type", "application/msgpack")],
                )
                assert response.status == 200
                assert decode(await response.read()) == b"over h3"


async def test_add_service_accepts_any_object_with_a_name(certs: Certs) -> None:
    class Greeter:  # the documented addService(anytype)
        name = "greet.Greeter"

        def Hello(self, req: Any, res: Any) -> None:
            res.setMessage(b"hello " + (req.message or b""))

    with trio.fail_after(TIMEOUT):
        async with serving(certs) as server:
            server.addService(Greeter())  # takes effect at the next serve()
            assert "greet.Greeter" in server.services
            with pytest.raises(ghostwire.ConfigError):
                server.addService(Greeter())
    second = ghostwire.GrpcServer(
        ghostwire.GrpcConfig(
            address=HOST, port=0, cert_file=certs.cert_file, key_file=certs.key_file
        )
    )
    second.addService(Greeter())
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            await nursery.start(second.serve)
            second.registerService("greeter", f"{HOST}:{second.port}")
            connection = second.createConnection("greeter")
            connection.config.ca_file = certs.ca_file
            connection.config.server_name = "localhost"
            assert await connection.call("greet.Greeter", "Hello", b"you") == b"hello you"
            second.stop()
