"""``serve(..., workers=N)``: N processes on one UDP port, routed by connection ID.

The parent binds N sockets to the port with ``SO_REUSEPORT`` (one group, in
order), attaches a classic BPF program that sends each datagram to the socket
named by the *worker byte* of its Destination Connection ID
(:mod:`.reuseport`), and starts one worker process per socket. Worker ``i``
issues only QUIC-LB connection IDs (:mod:`ghostwire.quic.lb`) carrying ``i``,
so every packet of a connection reaches its worker from the CID alone, also
after the client's address changed.

Workers are fresh interpreters (``python -m ghostwire.quic.net.workers``),
not forks of a process running trio: each gets its socket by fd, the handler
and config pickled on stdin (certificates and keys as DER), and stops when
stdin reaches EOF, which happens when the parent closes it (``serve``
cancelled) or dies. A worker that exits on its own is restarted on the same
socket, so the group order, and with it the routing, never changes.

Where the BPF program cannot be attached (a kernel before 4.5, a sandbox
that filters the option), or when ``GHOSTWIRE_WORKER_ROUTING=forward`` turns
it off, the kernel's 4-tuple hash spreads the datagrams and the workers
forward what reaches the wrong one (:mod:`.forwarding`), so a client whose
address changes still reaches its connection, one hop later.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import multiprocessing.spawn
import os
import pickle
import signal
import socket
import struct
import subprocess
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, NoReturn

import trio
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from ..config import ServerConfig
from ..lb import QuicLbCidGenerator, QuicLbConfig
from .endpoint import SOCKET_BUFFER_BYTES, Endpoint
from .forwarding import Forwarder, open_inboxes
from .reuseport import attach_worker_program, open_reuseport_sockets

log = logging.getLogger("ghostwire.quic")

MAX_WORKERS = 255  # the worker byte; 255 itself never names a socket
STOP_GRACE = 5.0  # seconds a worker gets to close its connections before it is killed
RESTART_DELAY = 1.0
ROUTING_ENV = "GHOSTWIRE_WORKER_ROUTING"
"""``auto`` (the default): the kernel routes by CID, or the workers forward where it
cannot. ``forward``: no BPF program, the workers always forward."""


class WorkerError(RuntimeError):
    """A worker process could not be started."""


@dataclass
class QuicWorkers:
    """What ``serve(..., workers=N)`` reports through ``task_status``."""

    address: tuple[str, int]
    workers: int
    cid_routing: bool
    """True when the kernel routes by connection ID (the BPF program is attached)."""
    pids: list[int] = dataclasses.field(default_factory=list)
    forwarding: bool = False
    """True when workers forward datagrams that reach the wrong one (no BPF program)."""

    @property
    def port(self) -> int:
        return self.address[1]


@dataclass
class _WorkerSpec:
    """Everything a worker needs, pickled to its stdin."""

    handler: Callable[[Any], Awaitable[object]]
    config: ServerConfig
    index: int
    lb_config: QuicLbConfig
    server_id: bytes
    nonce_prefix: bytes
    socket_fd: int
    status_fd: int
    cid_offset: int = 1
    inbox_fd: int = -1  # forwarding: this worker's inbox, and every worker's sending end
    sender_fds: tuple[int, ...] = ()

    def passed_fds(self) -> tuple[int, ...]:
        inbox = (self.inbox_fd,) if self.inbox_fd >= 0 else ()
        return (self.socket_fd, self.status_fd, *inbox, *self.sender_fds)

    def worker_config(self) -> ServerConfig:
        generator = QuicLbCidGenerator(
            self.lb_config, self.server_id, nonce_prefix=self.nonce_prefix
        )
        return dataclasses.replace(self.config, cid_generator=generator)


# -- the CIDs of each worker ------------------------------------------------------


def worker_cid_plan(
    config: ServerConfig, workers: int
) -> tuple[QuicLbConfig, list[tuple[bytes, bytes]], int]:
    """(QUIC-LB config, (server ID, nonce prefix) per worker, worker byte offset in the CID).

    Without a ``cid_generator`` the worker index is the server ID of a plaintext
    configuration. With a plaintext :class:`QuicLbCidGenerator` (a load balancer
    in front) the server keeps its server ID and the worker index is the first
    nonce byte. Encrypted IDs hide the worker byte from the kernel: refused.
    """
    generator = config.cid_generator
    if generator is None:
        length = max(config.connection_id_length, 7)
        lb = QuicLbConfig(config_id=0, server_id_length=1, nonce_length=length - 2)
        return lb, [(bytes([i]), b"") for i in range(workers)], 1
    if isinstance(generator, QuicLbCidGenerator) and generator.config.key is None:
        lb = generator.config
        if lb.nonce_length - len(generator.nonce_prefix) < 5:
            raise ValueError("workers need a QUIC-LB nonce of at least 5 bytes (1 for the worker)")
        offset = 1 + lb.server_id_length + len(generator.nonce_prefix)
        plan = [(generator.server_id, generator.nonce_prefix + bytes([i])) for i in range(workers)]
        return lb, plan, offset
    raise ValueError(
        "serve(workers=N) routes by a plaintext worker byte in the connection ID: use no "
        "cid_generator or a plaintext QuicLbCidGenerator (encrypted QUIC-LB IDs hide it)"
    )


# -- pickling a config ------------------------------------------------------------

_PRIVATE_KEYS = (
    ec.EllipticCurvePrivateKey,
    rsa.RSAPrivateKey,
    ed25519.Ed25519PrivateKey,
    ed448.Ed448PrivateKey,
)


class _Pickler(pickle.Pickler):
    """Pickles certificates and private keys as DER (cryptography's objects don't pickle)."""

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, x509.Certificate):
            return _load_certificate, (obj.public_bytes(serialization.Encoding.DER),)
        if isinstance(obj, _PRIVATE_KEYS):
            der = obj.private_bytes(
                serialization.Encoding.DER,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            return _load_private_key, (der,)
        return NotImplemented


def _load_certificate(der: bytes) -> x509.Certificate:
    return x509.load_der_x509_certificate(der)


def _load_private_key(der: bytes) -> Any:
    return serialization.load_der_private_key(der, None)


def _dumps(obj: Any) -> bytes:
    out = io.BytesIO()
    _Pickler(out, protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
    return out.getvalue()


def _frame(data: bytes) -> bytes:
    return struct.pack("!I", len(data)) + data


def _preparation_data() -> bytes:
    """sys.path, working directory and __main__ for the worker to import the
    handler the way the parent did (what multiprocessing's spawn sends)."""
    data = multiprocessing.spawn.get_preparation_data("ghostwire-worker")
    data.pop("authkey", None)  # not needed, and not picklable
    return pickle.dumps(data)


def _check_handler(handler: Any) -> None:
    try:
        pickle.dumps(handler)
    except Exception as exc:
        raise TypeError(
            "serve(workers=N) starts fresh processes: the handler must be importable "
            f"(a module-level function or a functools.partial of one), not {handler!r}"
        ) from exc


# -- the parent -------------------------------------------------------------------


async def serve_workers(
    handler: Callable[[Any], Awaitable[object]],
    port: int,
    config: ServerConfig,
    *,
    host: str | None,
    workers: int,
    task_status: trio.TaskStatus[QuicWorkers] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    if not 1 <= workers <= MAX_WORKERS - 1:
        raise ValueError(f"workers must be between 1 and {MAX_WORKERS - 1}")
    if not sys.platform.startswith("linux"):
        raise OSError("serve(workers=N) needs Linux (SO_REUSEPORT groups that balance UDP)")
    _check_handler(handler)
    lb, plan, offset = worker_cid_plan(config, workers)
    base = dataclasses.replace(config, cid_generator=None)
    family = socket.AF_INET6 if host is not None and ":" in host else socket.AF_INET
    routing = _routing_mode()
    sockets = open_reuseport_sockets(host, port, family, workers, SOCKET_BUFFER_BYTES)
    inboxes: list[tuple[socket.socket, socket.socket]] = []
    try:
        routed = routing == "auto" and attach_worker_program(sockets[0], offset)
        if not routed:
            if routing == "auto":
                log.warning(
                    "SO_ATTACH_REUSEPORT_CBPF unavailable: workers are chosen by 4-tuple "
                    "hash and forward the datagrams of other workers' connections"
                )
            inboxes = open_inboxes(workers)
        senders = tuple(sender.fileno() for _, sender in inboxes)
        host_, bound_port = sockets[0].getsockname()[:2]
        info = QuicWorkers((host_, bound_port), workers, routed, [0] * workers, not routed)
        prep = _preparation_data()
        async with trio.open_nursery() as nursery:
            for index, (server_id, prefix) in enumerate(plan):
                spec = _WorkerSpec(
                    handler,
                    base,
                    index,
                    lb,
                    server_id,
                    prefix,
                    sockets[index].fileno(),
                    -1,
                    cid_offset=offset,
                    inbox_fd=inboxes[index][0].fileno() if inboxes else -1,
                    sender_fds=senders,
                )
                await nursery.start(_supervise, spec, prep, info)
            task_status.started(info)
            await trio.sleep_forever()
    finally:
        for sock in sockets:
            sock.close()
        for inbox, sender in inboxes:
            inbox.close()
            sender.close()
    raise AssertionError("unreachable")  # pragma: no cover


def _routing_mode() -> str:
    mode = os.environ.get(ROUTING_ENV, "auto") or "auto"
    if mode not in ("auto", "forward"):
        raise ValueError(f"{ROUTING_ENV} must be 'auto' or 'forward', not {mode!r}")
    return mode


async def _supervise(
    spec: _WorkerSpec,
    prep: bytes,
    info: QuicWorkers,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run worker ``spec.index``; restart it if it exits while we still serve."""
    started = False
    while True:
        process = await _start_worker(spec, prep)
        info.pids[spec.index] = process.pid
        try:
            if not started:
                task_status.started()
                started = True
            code = await process.wait()
            log.error(
                "worker %d (pid %d) exited with %s; restarting", spec.index, process.pid, code
            )
        finally:
            with trio.CancelScope(shield=True):
                await _stop_worker(process)
        await trio.sleep(RESTART_DELAY)


async def _start_worker(spec: _WorkerSpec, prep: bytes) -> trio.Process:
    status_read, status_write = os.pipe()
    spec = dataclasses.replace(spec, status_fd=status_write)
    try:
        process = await trio.lowlevel.open_process(
            [sys.executable, "-m", "ghostwire.quic.net.workers"],
            stdin=subprocess.PIPE,
            pass_fds=spec.passed_fds(),
            start_new_session=True,  # a terminal's Ctrl-C reaches the parent only
        )
    finally:
        os.close(status_write)
    status = trio.lowlevel.FdStream(status_read)
    try:
        assert process.stdin is not None
        await process.stdin.send_all(_frame(prep) + _frame(_dumps(spec)))
        ready = await status.receive_some(1)
    except BaseException:
        with trio.CancelScope(shield=True):
            await _stop_worker(process)
            await status.aclose()
        raise
    await status.aclose()
    if ready != b"R":
        with trio.CancelScope(shield=True):
            await _stop_worker(process)
        raise WorkerError(f"worker {spec.index} failed to start (exit code {process.returncode})")
    return process


async def _stop_worker(process: trio.Process) -> None:
    """EOF on stdin asks the worker to close its connections; kill it after the grace."""
    if process.stdin is not None:
        await process.stdin.aclose()
    with trio.move_on_after(STOP_GRACE):
        await process.wait()
    if process.returncode is None:
        process.kill()
        await process.wait()


# -- the worker -------------------------------------------------------------------


def _read_frame(stream: Any) -> bytes:
    header = stream.read(4)
    if len(header) < 4:
        raise SystemExit(1)
    (size,) = struct.unpack("!I", header)
    data: bytes = stream.read(size)
    return data


async def _worker_main(spec: _WorkerSpec) -> None:
    from .api import serve_on_socket

    sock = socket.socket(fileno=spec.socket_fd)
    config = spec.worker_config()
    prepare = _forwarding(spec) if spec.inbox_fd >= 0 else None
    async with trio.open_nursery() as nursery:
        await nursery.start(partial(serve_on_socket, spec.handler, sock, config, prepare=prepare))
        os.write(spec.status_fd, b"R")
        os.close(spec.status_fd)
        stdin = trio.lowlevel.FdStream(os.dup(0))
        async with stdin:
            while await stdin.receive_some():
                pass  # EOF: the parent stopped serving, or is gone
        nursery.cancel_scope.cancel()


def _forwarding(spec: _WorkerSpec) -> Callable[[Endpoint], None]:
    """The endpoint set-up of a worker that forwards (no kernel routing)."""
    inbox = socket.socket(fileno=spec.inbox_fd)
    senders = [socket.socket(fileno=fd) for fd in spec.sender_fds]
    forwarder = Forwarder(spec.index, spec.cid_offset, inbox, senders)

    def prepare(endpoint: Endpoint) -> None:
        endpoint.misrouted = forwarder.misrouted
        endpoint.nursery.start_soon(forwarder.run, endpoint.deliver)

    return prepare


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop
    stdin = sys.stdin.buffer
    multiprocessing.spawn.prepare(pickle.loads(_read_frame(stdin)))
    spec: _WorkerSpec = pickle.loads(_read_frame(stdin))
    trio.run(_worker_main, spec)


if __name__ == "__main__":
    main()


__all__ = ["QuicWorkers", "WorkerError", "serve_workers", "worker_cid_plan"]
