"""Opening a UnifiedServer's listeners in a nursery: TCP, TLS over TCP, QUIC.

The TCP listeners are opened first so that, with ``http3_port`` unset,
HTTP/3 takes the very port number the TLS listener got (port 0 included):
``https://host:port`` then has its HTTP/3 twin on the same number, over UDP.
A port the system picked for TCP may be taken on UDP: then the pair is
opened again on another one, a few times.
"""

from __future__ import annotations

import errno
import ssl
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, Any

import trio

from ..http3 import serve as h3_serve
from ..quic.config import ServerConfig
from ..quic.net.api import QuicServer
from .errors import ConfigError
from .http3 import native_handler

if TYPE_CHECKING:
    from .server import UnifiedServer

Handler = Callable[[Any], Awaitable[None]]
PORT_PAIR_ATTEMPTS = 8  # TCP ports the system picks before giving up on a free UDP twin


def _tcp_host(server: UnifiedServer) -> str | None:
    address = server.config.address
    if server.config.enable_ipv6 and address in ("0.0.0.0", ""):
        return None  # every interface, IPv4 and IPv6
    return address


async def start_listeners(
    server: UnifiedServer,
    nursery: trio.Nursery,
    accepting: trio.CancelScope,
    tls_context: ssl.SSLContext | None,
    quic_config: ServerConfig | None,
) -> None:
    """Start every enabled listener in ``nursery``; connections run there too, while
    accepting them runs under ``accepting`` (cancelled first on a graceful stop)."""
    cfg = server.config
    if not (cfg.enable_http1 or cfg.enable_tls or cfg.enable_http3):
        raise ConfigError("nothing to serve: enable_http1, enable_tls and enable_http3 are off")
    from .http1 import Http1Options, serve_connection

    def options(scheme: str) -> Http1Options:
        return Http1Options(
            keep_alive_timeout=cfg.keep_alive_timeout_ms / 1000,
            request_timeout=cfg.request_timeout_ms / 1000,
            send_timeout=cfg.send_timeout_ms / 1000,
            max_body=cfg.max_request_body_size,
            max_connections=cfg.max_connections,
            alt_svc=server.alt_svc,
            scheme=scheme,
        )

    groups: list[tuple[Handler, list[Any]]] = []
    opened: list[trio.SocketListener] = []
    try:
        if cfg.enable_http1:
            listeners = await trio.open_tcp_listeners(cfg.port, host=_tcp_host(server))
            opened += listeners
            server.http1_address = _address(listeners[0])
            handler = partial(serve_connection, server, options=options("http"))
            groups.append((handler, listeners))
        raw = await _start_tls_and_http3(server, nursery, quic_config)
        opened += raw
        if raw:
            assert tls_context is not None
            context = tls_context
            tls = [trio.SSLListener(listener, context, https_compatible=True) for listener in raw]
            handler = partial(serve_connection, server, options=options("https"))
            groups.append((handler, tls))
    except BaseException:
        # Whatever failed (a cancellation too), every listener opened closes:
        # synchronously, as a cancelled aclose() could stop halfway. (HTTP/3,
        # if it started, runs in ``nursery``, which the error cancels.)
        for listener in opened:
            listener.socket.close()
        server.http1_address = server.tls_address = server.http3_address = None
        raise
    # Accepting starts last: nothing else may fail while HTTP/3 is starting up.
    if groups:
        nursery.start_soon(_accept, accepting, groups, nursery)


async def _start_tls_and_http3(
    server: UnifiedServer, nursery: trio.Nursery, quic_config: ServerConfig | None
) -> list[trio.SocketListener]:
    """Open the TLS listeners and start HTTP/3, as a pair: HTTP/3 may need the
    TLS port's number. Returns the TLS listeners (none if TLS is off)."""
    cfg = server.config
    for attempt in range(PORT_PAIR_ATTEMPTS):
        raw: list[trio.SocketListener] = []
        if cfg.enable_tls:
            raw = await trio.open_tcp_listeners(cfg.tls_port, host=_tcp_host(server))
            server.tls_address = _address(raw[0])
        try:
            if cfg.enable_http3:
                assert quic_config is not None
                await _start_http3(server, nursery, quic_config)
        except BaseException as exc:
            for listener in raw:
                listener.socket.close()
            server.tls_address = None
            # The system chose the TLS port for TCP alone; it may be taken on UDP.
            picked = cfg.enable_tls and cfg.tls_port == 0 and cfg.http3_port is None
            in_use = isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE
            if in_use and picked and attempt < PORT_PAIR_ATTEMPTS - 1:
                continue
            raise
        return raw
    raise AssertionError("unreachable")  # pragma: no cover - the last attempt raises


async def _start_http3(
    server: UnifiedServer, nursery: trio.Nursery, quic_config: ServerConfig
) -> None:
    """HTTP/3 on ``http3_port``, by default the TLS listener's port number."""
    cfg = server.config
    port = cfg.http3_port
    if port is None:
        port = server.tls_address[1] if server.tls_address else cfg.tls_port

    async def run(*, task_status: trio.TaskStatus[QuicServer]) -> None:
        # Under a scope of its own: a graceful stop cancels it first, so
        # HTTP/3 clients get GOAWAY at once while requests finish.
        with trio.CancelScope() as scope:
            server._http3_scope = scope
            await h3_serve(
                native_handler(server),
                port,
                quic_config,
                host=cfg.address,
                shutdown_timeout=server.shutdown_timeout,
                task_status=task_status,
            )

    quic = await nursery.start(run)
    server._set_quic_server(quic)


async def _accept(
    accepting: trio.CancelScope,
    groups: list[tuple[Handler, list[Any]]],
    connections: trio.Nursery,
) -> None:
    """Accept on every TCP listener until ``accepting`` is cancelled; the
    connections live in ``connections`` and outlive it (a graceful stop)."""
    with accepting:
        async with trio.open_nursery() as nursery:
            for handler, listeners in groups:
                nursery.start_soon(
                    partial(trio.serve_listeners, handler, listeners, handler_nursery=connections)
                )


def _address(listener: trio.SocketListener) -> tuple[str, int]:
    name = listener.socket.getsockname()
    return str(name[0]), int(name[1])


__all__ = ["start_listeners"]
