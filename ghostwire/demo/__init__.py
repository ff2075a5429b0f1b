"""``ghostwire demo``: the contract VM example end to end over loopback.

In one process: a throwaway certificate authority and server certificate, an
RPC server of the contract VM (:mod:`ghostwire.demo.contract_vm`) on an
ephemeral port, and a client that verifies the server's certificate against
that CA. The client deploys a token, transfers tokens (uint256 amounts) and
reads balances. A subscriber to the contract logs, in a task of its own
(:mod:`ghostwire.demo.follow`), then lives through a server restart: the
server stops, blocks are mined while it is down, it starts again on the same
port, and the subscriber reconnects and resubscribes ``after`` the last
cursor it saw, by itself; the demo checks that no log was lost or repeated.
Last, it measures call latency and event throughput and prints a short
report.
"""

from __future__ import annotations

import time
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import trio

from .. import quic, rpc
from ..certs import CertificateAuthority
from .contract_vm import ContractVM, contract_service
from .follow import Connect, LogFollower

ALICE = b"\xa1" * 20
BOB = b"\xb0" * 20
TOKEN_SUPPLY = 10**27  # past 64 bits: travels as a msgpack bigint
LATENCY_CALLS = 300
THROUGHPUT_EVENTS = 2000
LIVE_TRANSFERS = 5


@dataclass
class Report:
    handshake_ms: float = 0.0
    latencies: list[float] = field(default_factory=list)  # seconds, one per call
    events: int = 0
    events_seconds: float = 0.0
    resumed_after: Any = None
    cursors_seen: list[Any] = field(default_factory=list)


@dataclass
class Node:
    """The server side: the chain outlives the RPC server that serves it."""

    vm: ContractVM
    config: quic.ServerConfig
    host: str
    port: int = 0
    server: rpc.Server | None = None
    serving: trio.Event = field(default_factory=trio.Event)  # set once serve() returned

    async def start(self, nursery: trio.Nursery) -> None:
        self.server = rpc.Server([contract_service(self.vm)], config=self.config)
        self.serving = trio.Event()
        listener = await nursery.start(self._serve, self.server)
        self.port = listener.port  # a restart binds the same port again

    async def _serve(
        self, server: rpc.Server, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED
    ) -> None:
        try:
            await server.serve(self.port, host=self.host, task_status=task_status)
        finally:
            self.serving.set()

    async def stop(self) -> None:
        """Shut the server down gracefully; return once its port is free again."""
        assert self.server is not None
        await self.server.shutdown(grace=1.0)  # subscriptions end with UNAVAILABLE
        await self.serving.wait()


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _say(label: str, text: str) -> None:
    print(f"{label:<12} : {text}", flush=True)


async def contract_calls(client: rpc.Client) -> bytes:
    """Deploy a token, move some of it, read balances; the token's address."""
    vm = client.service("vm")
    deployed = await vm.deploy(ALICE, "token", {"symbol": "GHO", "supply": TOKEN_SUPPLY})
    token: bytes = deployed["address"]
    _say("deploy", f"token GHO at 0x{token.hex()}, supply {TOKEN_SUPPLY}")
    receipt = await vm.call(ALICE, token, "transfer", {"to": BOB, "amount": 25 * 10**24})
    (log,) = receipt["logs"]
    _say("transfer", f"block {receipt['block']}: {log['event']} {log['args']['amount']} to Bob")
    alice = await vm.query(token, "balance_of", {"owner": ALICE})
    bob = await vm.query(token, "balance_of", {"owner": BOB})
    assert alice + bob == TOKEN_SUPPLY, (alice, bob)
    _say("balances", f"Alice {alice}, Bob {bob} GHO; Alice {await vm.balance(ALICE)} native")
    return token


async def follow_through_restart(
    connect: Connect, client: rpc.Client, node: Node, nursery: trio.Nursery, report: Report
) -> None:
    """Follow the logs in a task of its own while the server restarts under it.

    The follower (:class:`~ghostwire.demo.follow.LogFollower`) sees live
    transfers; the server stops (the subscription ends with UNAVAILABLE),
    blocks are mined while it is down, and it starts again on the same port;
    the follower reconnects and resubscribes ``after`` its last cursor by
    itself. Every log must reach it once, in order.
    """
    follower = LogFollower(connect, partial(_say, "restart"))
    async with trio.open_nursery() as following:
        await following.start(follower.run)
        for _ in range(LIVE_TRANSFERS):
            await client.call("vm.transfer", ALICE, BOB, 10**20)
        await follower.wait_for(_log_count(node.vm))
        report.resumed_after = follower.tracker.resume_after
        await node.stop()
        for _ in range(3):  # blocks mined while the server is down
            node.vm.transfer(ALICE, BOB, 1)
        await node.start(nursery)
        async with connect() as again:
            await again.call("vm.transfer", BOB, ALICE, 7)
        await follower.wait_for(_log_count(node.vm))
        following.cancel_scope.cancel()
    everything = [[log["block"], log["index"]] for log in node.vm.logs_after((-1, -1))]
    assert follower.cursors == everything, "a log was lost or repeated across the restart"
    assert follower.attempts >= 2, "the subscription never saw the restart"
    report.cursors_seen = follower.cursors
    dropped = follower.duplicates_dropped
    _say(
        "resumed",
        f"on port {node.port} after cursor {report.resumed_after}: "
        f"{len(everything)} logs in all, none lost or repeated "
        f"({follower.attempts} subscribe attempts, {dropped} duplicates dropped)",
    )


def _log_count(vm: ContractVM) -> int:
    return sum(1 for _ in vm.logs_after((-1, -1)))


async def measure(client: rpc.Client, node: Node, report: Report) -> None:
    for _ in range(LATENCY_CALLS):
        started = time.perf_counter()
        await client.call("vm.balance", ALICE)
        report.latencies.append(time.perf_counter() - started)
    counter = node.vm.deploy(ALICE, "counter", {})["address"]
    start = node.vm.height
    for _ in range(THROUGHPUT_EVENTS):
        node.vm.call(ALICE, counter, "increment", {})
    started = time.perf_counter()
    async with client.subscribe("vm.logs", contract=counter, follow=False, after=start) as events:
        report.events = sum([1 async for _ in events])
    report.events_seconds = time.perf_counter() - started
    assert report.events == THROUGHPUT_EVENTS, report.events


def print_report(report: Report) -> None:
    print("-- report", flush=True)
    _say("handshake", f"{report.handshake_ms:.2f} ms")
    p50 = _percentile(report.latencies, 0.50) * 1000
    p99 = _percentile(report.latencies, 0.99) * 1000
    _say("call latency", f"p50 {p50:.3f} ms, p99 {p99:.3f} ms ({len(report.latencies)} calls)")
    rate = report.events / report.events_seconds if report.events_seconds else 0.0
    _say("events", f"{rate:.0f} events/s ({report.events} logs in {report.events_seconds:.3f} s)")


async def _demo(host: str) -> Report:
    ca = CertificateAuthority.create("ghostwire demo CA")
    identity = ca.issue(["localhost", host])
    server_config = quic.ServerConfig(
        alpn=[rpc.ALPN], certificate_chain=identity.chain, private_key=identity.private_key
    )
    client_config = quic.ClientConfig(
        alpn=[rpc.ALPN], cadata=ca.cert_pem(), server_name="localhost"
    )
    node = Node(ContractVM(genesis={ALICE: 10**30}), server_config, host)
    report = Report()

    def connect() -> AbstractAsyncContextManager[rpc.Client]:
        return rpc.connect(f"{host}:{node.port}", config=client_config)

    async with trio.open_nursery() as nursery:
        await node.start(nursery)
        print(f"contract VM served over RPC on udp://{host}:{node.port}", flush=True)
        started = time.perf_counter()
        async with connect() as client:
            report.handshake_ms = (time.perf_counter() - started) * 1000
            conn = client.connection.connection
            _say("connected", f"QUIC 0x{conn.version:08x}, {conn.cipher_suite}, ALPN {conn.alpn}")
            await contract_calls(client)
            await follow_through_restart(connect, client, node, nursery, report)
        async with connect() as client:
            await measure(client, node, report)
        await node.stop()
    return report


async def demo(host: str = "127.0.0.1") -> int:
    """The whole demo, report included; its exit code."""
    print_report(await _demo(host))
    return 0


def run_demo(host: str = "127.0.0.1") -> int:
    return trio.run(demo, host)
