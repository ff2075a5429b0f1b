"""The trio entry points: ``connect``, ``serve`` and ``open_listener``.

* ``async with connect(host, port, config) as conn`` returns once the
  handshake completed, and closes the connection (and its socket) on exit.
* ``await nursery.start(partial(serve, handler, port, config, host=host))``
  has ``trio.serve_ssl_over_tcp``'s shape: it binds, reports a :class:`QuicServer`
  (with the bound ``port``) through ``task_status``, and runs ``handler(conn)``
  for every connection that completes its handshake, in that connection's own
  nursery.
* ``open_listener`` gives a :class:`trio.abc.Listener` for code that prefers
  ``await listener.accept()``.

Context managers here unwrap single-exception groups so callers catch
``HandshakeError`` or ``ConnectionClosed``, not an ``ExceptionGroup``.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from functools import partial
from typing import IO, Any, NoReturn

import trio

from ..config import ClientConfig, ServerConfig
from ..connection import QuicConnection
from ..demux import Demux
from ..qlog import QlogSink
from .connection import Connection
from .endpoint import Endpoint, open_udp_socket
from .exceptions import ConnectionRefused, HandshakeTimeout

log = logging.getLogger("ghostwire.quic")

Handler = Callable[[Connection], Awaitable[object]]


@asynccontextmanager
async def _unwrapping_nursery() -> AsyncIterator[trio.Nursery]:
    """A nursery whose single-exception groups are re-raised as the exception."""
    try:
        async with trio.open_nursery() as nursery:
            yield nursery
    except BaseExceptionGroup as group:
        leaves = _leaves(group)
        if len(leaves) == 1:
            raise leaves[0] from leaves[0].__cause__  # its own cause, not the group
        raise


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            out.extend(_leaves(exc))
        else:
            out.append(exc)
    return out


# For the layers above QUIC (HTTP/3), which keep the same "no ExceptionGroup
# escapes a public call" rule.
unwrapping_nursery = _unwrapping_nursery
exception_leaves = _leaves


class _SecretsLog:
    """Appends NSS key log lines to a file (only when the user asked for it)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._file: IO[str] = open(path, "a", encoding="ascii")  # noqa: SIM115
        log.warning("writing TLS secrets to %s (SSLKEYLOGFILE)", os.fspath(path))

    def __call__(self, line: str) -> None:
        self._file.write(line + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def _keylog_path(config: ClientConfig | ServerConfig) -> str | os.PathLike[str] | None:
    if config.keylog_file is not None:
        return config.keylog_file
    return os.environ.get("SSLKEYLOGFILE") or None


class _ConnectionFiles:
    """Key log and qlog outputs for the connections of one endpoint.

    A qlog file is opened by its connection's sink on the first packet
    (named by the original destination CID) and closed when the connection
    ends; whatever is still open closes with the endpoint.
    """

    def __init__(self, config: ClientConfig | ServerConfig) -> None:
        path = _keylog_path(config)
        self.keylog = _SecretsLog(path) if path else None
        self.qlog_dir = config.qlog_dir
        self._qlog_files: set[_TraceFile] = set()

    def kwargs(self, vantage: str, now: float) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"keylog": self.keylog}
        if self.qlog_dir is not None:
            kwargs["qlog"] = QlogSink(self._open_trace, vantage_point=vantage, start_time=now)
        return kwargs

    def _open_trace(self, name: str) -> _TraceFile:
        assert self.qlog_dir is not None
        os.makedirs(self.qlog_dir, exist_ok=True)
        trace = _TraceFile(os.path.join(self.qlog_dir, name), self._qlog_files)
        self._qlog_files.add(trace)
        return trace

    def close(self) -> None:
        if self.keylog is not None:
            self.keylog.close()
        for trace in list(self._qlog_files):
            trace.close()


class _TraceFile:
    """One connection's qlog file; forgets itself when closed."""

    def __init__(self, path: str, registry: set[_TraceFile]) -> None:
        self._file: IO[str] = open(path, "w", encoding="utf-8")  # noqa: SIM115
        self._registry = registry

    def write(self, text: str) -> None:
        self._file.write(text)

    def close(self) -> None:
        self._file.close()
        self._registry.discard(self)


async def _resolve(host: str, port: int) -> list[tuple[int, Any]]:
    """The addresses to try, in the resolver's order, without duplicates."""
    infos = await trio.socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    if not infos:
        raise OSError(f"cannot resolve {host!r}")
    candidates: list[tuple[int, Any]] = []
    for family, _, _, _, addr in infos:
        if (family, addr) not in candidates:
            candidates.append((family, addr))
    return candidates[:MAX_ADDRESSES]


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


# When a name resolves to several addresses (say ::1 and 127.0.0.1 for
# localhost), an address that stays silent this long gives way to the next.
NEXT_ADDRESS_AFTER = 2.0
MAX_ADDRESSES = 4


@asynccontextmanager
async def connect(
    host: str, port: int, config: ClientConfig, *, local_port: int = 0
) -> AsyncIterator[Connection]:
    """Connect to a QUIC server; yields the connection once the handshake is done
    (or at once when ``config.early_data`` and a stored ticket allow 0-RTT:
    streams opened then send 0-RTT data; ``await conn.wait_handshake()`` waits).

    Raises :class:`HandshakeError` (or its subclasses :class:`CertificateError`,
    :class:`HandshakeTimeout` and :class:`ConnectionRefused`) when the
    connection cannot be established; nothing listening at the address ends
    the handshake at once (ICMP port unreachable, on Linux).
    If ``host`` resolves to several addresses they are tried in order, each
    but the last for at most ``NEXT_ADDRESS_AFTER`` seconds of silence.
    """
    config.require_alpn()
    candidates = await _resolve(host, port)
    async with AsyncExitStack() as stack:
        for index, (family, address) in enumerate(candidates):
            last = index == len(candidates) - 1
            timeout = config.handshake_timeout
            if not last:
                timeout = min(timeout, NEXT_ADDRESS_AFTER)
            try:
                conn = await stack.enter_async_context(
                    _connect_to(host, family, address, config, local_port, timeout)
                )
            except (HandshakeTimeout, ConnectionRefused):
                if last:
                    raise
                continue
            break
        yield conn


@asynccontextmanager
async def _connect_to(
    host: str,
    family: int,
    address: Any,
    config: ClientConfig,
    local_port: int,
    handshake_timeout: float,
) -> AsyncIterator[Connection]:
    sock = open_udp_socket(None, local_port, family)
    files: _ConnectionFiles | None = None
    try:
        files = _ConnectionFiles(config)  # may fail (a key log in a missing directory)
        async with _unwrapping_nursery() as nursery:
            endpoint = Endpoint(sock, Demux(None, cid_length=config.connection_id_length), nursery)
            endpoint.enable_icmp_errors()
            now = trio.current_time()
            core = QuicConnection(
                config,
                peer_address=address,
                now=now,
                server_name=host,
                **files.kwargs("client", now),
            )
            core.handshake_deadline = now + handshake_timeout
            endpoint.demux.add_connection(core)
            conn = Connection(core, endpoint)
            # The first flight goes before the connection's task reads its
            # first timer (which runs in that task from its first step), and
            # before the endpoint's tasks are even scheduled (they start
            # with the next scheduler pass either way).
            core.connect(trio.current_time())
            early = core.zero_rtt_send_keys is not None
            if early:
                # 0-RTT (config.early_data and a ticket that allows it): the
                # ClientHello waits (a few scheduler passes at most) for the
                # caller's first writes, which share its datagram.
                conn._early_flight = True
                conn._flush_soon()
            else:
                conn._flush()
            endpoint.start()
            await nursery.start(conn._run)
            try:
                if not early:
                    await conn._wait_handshake()
                yield conn
            finally:
                with trio.CancelScope(shield=True):
                    await conn.aclose()
                nursery.cancel_scope.cancel()
    finally:
        sock.close()
        if files is not None:
            files.close()


class QuicServer:
    """What ``serve`` reports through ``task_status``: the bound endpoint."""

    def __init__(self, endpoint: Endpoint, demux: Demux) -> None:
        self._endpoint = endpoint
        self._demux = demux

    @property
    def port(self) -> int:
        return self._endpoint.local_address[1]

    @property
    def address(self) -> tuple[str, int]:
        return self._endpoint.local_address

    @property
    def connection_count(self) -> int:
        return len(self._endpoint.connections)

    def refuse_new_connections(self, reason: str = "server is shutting down") -> None:
        """From now on answer every new connection attempt with CONNECTION_REFUSED
        (RFC 9000 §20.1), statelessly; connections already open are unaffected."""
        self._demux.refusing = reason

    def statistics(self) -> dict[str, int]:
        stats = self._demux.stats
        return {
            "connections": len(self._endpoint.connections),
            "datagrams_dropped": stats.datagrams_dropped,
            "version_negotiations_sent": stats.version_negotiations_sent,
            "retries_sent": stats.retries_sent,
            "stateless_resets_sent": stats.stateless_resets_sent,
            "connections_refused": stats.connections_refused,
            "send_queue_drops": self._endpoint.datagrams_dropped_on_send,
        }


def _server_family(host: str | None) -> int:
    if host is not None and _is_ip(host) and ipaddress.ip_address(host).version == 6:
        return socket.AF_INET6
    return socket.AF_INET


def legacy_serve_arguments(
    port: Any, config: Any, legacy: tuple[Any, ...], host: str | None, name: str
) -> tuple[int, Any, str | None]:
    """Accept the old ``serve(handler, host, port, config)`` order for one release.

    Returns (port, config, host). The new shape follows
    ``trio.serve_ssl_over_tcp(handler, port, ssl_context, *, host=None)``.
    """
    if not legacy:
        if not isinstance(port, int) or isinstance(port, bool):
            raise TypeError(f"{name}(handler, port, config, *, host=None): port must be an int")
        return port, config, host
    if len(legacy) != 1 or host is not None or not isinstance(config, int):
        raise TypeError(f"use {name}(handler, port, config, *, host=None)")
    warnings.warn(
        f"{name}(handler, host, port, config) is deprecated; use "
        f"{name}(handler, port, config, host=host)",
        DeprecationWarning,
        stacklevel=3,
    )
    return config, legacy[0], port


async def serve(
    handler: Handler,
    port: int,
    config: ServerConfig,
    *legacy: Any,
    host: str | None = None,
    workers: int = 1,
    task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Serve QUIC on ``port`` (on every interface, or ``host``), running
    ``handler(conn)`` per connection.

    The shape is ``trio.serve_ssl_over_tcp``'s: ``await
    nursery.start(partial(serve, handler, 0, config, host="127.0.0.1"))``
    reports a :class:`QuicServer` (with the bound ``port``). The old order
    ``serve(handler, host, port, config)`` still works, with a
    DeprecationWarning.

    Each handler runs in its connection's nursery: when the connection closes
    the handler is cancelled; when the handler returns the connection is
    closed gracefully. A handler that raises closes only its own connection,
    with the application error code ``Connection.handler_error_code``.
    Cancelling ``serve`` sends CONNECTION_CLOSE to every client at once.

    ``workers=N`` (Linux) runs N worker processes on the port, each a ``serve``
    of its own, and reports a :class:`~ghostwire.quic.net.workers.QuicWorkers`;
    the handler must then be importable (a module-level function, or a
    ``functools.partial`` of one). See docs/scaling.md.
    """
    port, config, host = legacy_serve_arguments(port, config, legacy, host, "serve")
    config.require_alpn()
    if workers != 1:
        from .workers import serve_workers

        await serve_workers(
            handler, port, config, host=host, workers=workers, task_status=task_status
        )
        raise AssertionError("unreachable")  # pragma: no cover
    await serve_on_socket(
        handler, open_udp_socket(host, port, _server_family(host)), config, task_status=task_status
    )
    raise AssertionError("unreachable")  # pragma: no cover


async def serve_on_socket(
    handler: Handler,
    sock: socket.socket,
    config: ServerConfig,
    *,
    prepare: Callable[[Endpoint], None] | None = None,
    task_status: trio.TaskStatus[QuicServer] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """``serve`` on a bound UDP socket, which it closes when it ends.

    ``prepare(endpoint)`` runs before the endpoint reads its first datagram
    (``serve(workers=N)`` installs its forwarding there).
    """
    files: _ConnectionFiles | None = None
    try:
        files = _ConnectionFiles(config)  # may fail (a key log in a missing directory)
        async with _unwrapping_nursery() as nursery:
            demux = Demux(config)
            endpoint = Endpoint(sock, demux, nursery)

            def on_new_connection(core: QuicConnection, addr: Any) -> None:
                conn = Connection(core, endpoint)
                nursery.start_soon(conn._run, handler)

            endpoint.on_new_connection = on_new_connection
            endpoint._connection_kwargs = partial(_server_conn_kwargs, files)  # type: ignore[method-assign]
            if prepare is not None:
                prepare(endpoint)
            endpoint.start()
            task_status.started(QuicServer(endpoint, demux))
            await trio.sleep_forever()
    finally:
        sock.close()
        if files is not None:
            files.close()
    raise AssertionError("unreachable")  # pragma: no cover


def _server_conn_kwargs(files: _ConnectionFiles) -> dict[str, Any]:
    if files.keylog is None and files.qlog_dir is None:
        return {}
    return files.kwargs("server", trio.current_time())


class QuicListener(trio.abc.Listener[Connection]):
    """Accepts established connections: ``conn = await listener.accept()``."""

    def __init__(
        self,
        server: QuicServer,
        send: trio.MemorySendChannel[Connection],
        receive: trio.MemoryReceiveChannel[Connection],
        cancel: trio.CancelScope,
    ) -> None:
        self.server = server
        self._send = send
        self._receive = receive
        self._cancel = cancel

    @property
    def port(self) -> int:
        return self.server.port

    async def accept(self) -> Connection:
        try:
            return await self._receive.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise trio.ClosedResourceError("listener is closed") from None

    async def aclose(self) -> None:
        await self._receive.aclose()
        self._cancel.cancel()
        await trio.lowlevel.checkpoint()


@asynccontextmanager
async def open_listener(
    host: str | None, port: int, config: ServerConfig, *, backlog: int = 128
) -> AsyncIterator[QuicListener]:
    """A listener yielding connections whose handshake completed.

    Accepted connections stay open until the caller closes them or leaves the
    ``async with`` block (which closes the endpoint and every connection).
    """
    send, receive = trio.open_memory_channel[Connection](backlog)

    async def hand_over(conn: Connection) -> None:
        try:
            send.send_nowait(conn)
        except (trio.WouldBlock, trio.ClosedResourceError):
            await conn.aclose(0x2, "server busy")
            return
        await conn.wait_closed()

    # The server runs in its own cancel scope: closing the listener stops it
    # (and closes its connections) without cancelling the caller's block.
    server_scope = trio.CancelScope()

    async def run_server(*, task_status: trio.TaskStatus[QuicServer]) -> None:
        with server_scope:
            await serve(hand_over, port, config, host=host, task_status=task_status)

    async with _unwrapping_nursery() as nursery:
        server = await nursery.start(run_server)
        listener = QuicListener(server, send, receive, server_scope)
        try:
            yield listener
        finally:
            server_scope.cancel()
