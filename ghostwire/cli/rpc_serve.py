"""``ghostwire rpc-serve MODULE:ATTR``: serve RPC services until Ctrl-C.

``MODULE`` is imported (the current directory comes first on the import
path, so ``app.py`` here is ``app``); ``ATTR`` (dotted names allowed) is an
``rpc.Service``, a list or tuple of them, or an ``rpc.Server`` (which keeps its
own limits and interceptors; its certificate is replaced only if
``--certfile`` is given). Without ``--certfile`` a fresh self-signed
certificate is made for localhost, 127.0.0.1, ::1 and ``--host``, written to a
temporary folder for ``ghostwire call --cafile``; the banner says where, and
the command that calls the server.

:func:`rpc_serve` is an async function for ``nursery.start``: it binds,
prints the banner, reports a :class:`RpcServeInfo` and serves until its
``stop`` event is set, then shuts down gracefully; :func:`run` is the
synchronous entry point (``trio.run``, signals, exit codes). Ctrl-C (or
SIGTERM) stops it: new calls get UNAVAILABLE, calls in flight get ``--grace``
seconds to finish, subscriptions end cleanly, then it exits 0. A second Ctrl-C
stops at once (exit 130).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib
import os
import signal
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TextIO

import trio

from ..certs import IssuedCertificate, self_signed_certificate
from ..quic.config import ServerConfig
from ..rpc import ALPN, RpcListener, Server, Service
from ..rpc.service import MethodKind
from .common import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    has_keyboard_interrupt,
    port_number,
    seconds,
    single_cli_error,
)
from .h3_serve import certificate_names, certificate_names_of, url_host

NAME = "rpc-serve"
HELP = "serve RPC services (MODULE:ATTR) over QUIC"
DESCRIPTION = (
    "Serve the ghostwire RPC services of MODULE:ATTR (a Service, a list of them, "
    "or a Server) over QUIC until Ctrl-C."
)
EPILOG = """\
example (app.py in the current directory):
  import ghostwire.rpc as rpc
  zvm = rpc.Service("zvm")
  @zvm.call
  async def get_balance(ctx: rpc.Context, address: bytes) -> int:
      return 10**30

  ghostwire rpc-serve app:zvm --port 4433
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``rpc-serve`` options."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument(
        "target",
        metavar="MODULE:ATTR",
        help="what to serve: an rpc.Service, a list of them, or an rpc.Server",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)"
    )
    parser.add_argument(
        "--port", type=port_number, default=4433, help="UDP port (default 4433; 0 picks a free one)"
    )
    parser.add_argument(
        "--certfile", metavar="FILE", help="certificate chain (PEM); default: a new self-signed one"
    )
    parser.add_argument(
        "--keyfile", metavar="FILE", help="private key (PEM) for --certfile (default: certfile)"
    )
    parser.add_argument(
        "--grace",
        type=seconds,
        default=5.0,
        metavar="SECONDS",
        help="on Ctrl-C, time given to calls in flight (default 5)",
    )


@dataclass
class RpcServeOptions:
    """What ``rpc-serve`` was asked to do (see :func:`add_arguments`)."""

    target: str
    host: str = "127.0.0.1"
    port: int = 4433
    certfile: str | None = None
    keyfile: str | None = None
    grace: float = 5.0

    @classmethod
    def from_namespace(cls, args: argparse.Namespace) -> RpcServeOptions:
        return cls(
            target=args.target,
            host=args.host,
            port=args.port,
            certfile=args.certfile,
            keyfile=args.keyfile,
            grace=args.grace,
        )


@dataclass
class RpcServeInfo:
    """What :func:`rpc_serve` reports once it listens."""

    server: Server
    listener: RpcListener
    address: str
    """``host:port`` to give ``ghostwire call``."""
    certificate: IssuedCertificate
    cert_path: str | None
    """The self-signed certificate as PEM, for ``ghostwire call --cafile``."""


# -- loading MODULE:ATTR --------------------------------------------------------------


@contextmanager
def _current_directory_importable() -> Iterator[None]:
    cwd = os.getcwd()
    added = cwd not in sys.path and "" not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        yield
    finally:
        if added and cwd in sys.path:
            sys.path.remove(cwd)


def load_target(spec: str) -> Server | list[Service]:
    """The Server, or the services, that ``MODULE:ATTR`` names; a usage error otherwise."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise CliError(f"expected MODULE:ATTR (like app:zvm), got {spec!r}", EXIT_USAGE)
    with _current_directory_importable():
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise CliError(f"cannot import {module_name}: {exc}", EXIT_USAGE) from None
    value: Any = module
    for part in attr.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            raise CliError(f"{module_name} has no attribute {attr!r}", EXIT_USAGE) from None
    if isinstance(value, Server):
        return value
    if isinstance(value, Service):
        return [value]
    if (
        isinstance(value, list | tuple)
        and value
        and all(isinstance(item, Service) for item in value)
    ):
        return list(value)
    raise CliError(
        f"{spec} is a {type(value).__name__}: expected an rpc.Service, "
        "a list of them, or an rpc.Server",
        EXIT_USAGE,
    )


def load_identity(options: RpcServeOptions) -> tuple[ServerConfig, IssuedCertificate, bool]:
    """The QUIC config for ``--certfile``/``--keyfile``, or a new self-signed certificate."""
    if options.certfile is None:
        if options.keyfile is not None:
            raise CliError("--keyfile needs --certfile", EXIT_USAGE)
        identity = self_signed_certificate(certificate_names(options.host))
        config = ServerConfig(
            alpn=[ALPN], certificate_chain=identity.chain, private_key=identity.private_key
        )
        return config, identity, True
    try:
        config = ServerConfig(alpn=[ALPN], certfile=options.certfile, keyfile=options.keyfile)
    except (OSError, ValueError) as exc:
        raise CliError(f"cannot load the certificate: {exc}", EXIT_USAGE) from None
    chain = list(config.certificate_chain)
    return config, IssuedCertificate(chain[0], config.private_key, chain), False


def build_server(options: RpcServeOptions) -> tuple[Server, IssuedCertificate, bool]:
    """The server to run, its certificate, and whether it is self-signed (made here).

    A given Server keeps its own certificate unless ``--certfile`` is given.
    """
    target = load_target(options.target)
    if isinstance(target, Server) and options.certfile is None:
        if options.keyfile is not None:
            raise CliError("--keyfile needs --certfile", EXIT_USAGE)
        chain = list(target.config.certificate_chain)
        return target, IssuedCertificate(chain[0], target.config.private_key, chain), False
    config, identity, self_signed = load_identity(options)
    if isinstance(target, Server):
        target.config = dataclasses.replace(
            target.config,
            certfile=None,
            keyfile=None,
            certificate_chain=config.certificate_chain,
            private_key=config.private_key,
        )
        return target, identity, self_signed
    return Server(target, config=config), identity, self_signed


# -- serving --------------------------------------------------------------------------


def banner(info: RpcServeInfo, self_signed: bool) -> list[str]:
    """What ``rpc-serve`` prints once it listens."""
    methods = info.server.dispatcher.methods
    lines = [f"Serving {len(methods)} RPC method(s) at {info.address}"]
    for name, method in sorted(methods.items()):
        kind = {MethodKind.UNARY: "call", MethodKind.EVENTS: "events"}.get(method.kind, "stream")
        lines.append(f"  {name} ({kind})")
    if self_signed:
        names = ", ".join(certificate_names_of(info.certificate))
        lines.append(f"  self-signed certificate for {names}, written to {info.cert_path}")
    else:
        lines.append(f"  certificate: {info.certificate.certificate.subject.rfc4514_string()}")
    lines.append(f"  SHA-256 fingerprint: {info.certificate.sha256_fingerprint()}")
    trust = f"--cafile {info.cert_path}" if info.cert_path else "--cafile CA.pem"
    example = _example_method(info.server)
    lines.append(f"  call it: ghostwire call {trust} {info.address} {example} '{{...}}'")
    lines.append("Press Ctrl-C to stop.")
    return lines


def _example_method(server: Server) -> str:
    methods = server.dispatcher.methods
    unary = sorted(n for n, m in methods.items() if m.kind is MethodKind.UNARY)
    return unary[0] if unary else "service.method"


async def rpc_serve(
    options: RpcServeOptions,
    stop: trio.Event,
    *,
    stdout: TextIO,
    task_status: trio.TaskStatus[RpcServeInfo] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until ``stop`` is set, then shut down gracefully (``options.grace``)."""
    server, identity, self_signed = build_server(options)
    with tempfile.TemporaryDirectory(prefix="ghostwire-rpc-serve-") as tmp:
        cert_path: str | None = None
        if self_signed:
            cert_path = os.path.join(tmp, "cert.pem")
            await trio.Path(cert_path).write_bytes(identity.cert_pem())
        async with trio.open_nursery() as nursery:
            serve = functools.partial(server.serve, options.port, host=options.host)
            try:
                listener: RpcListener = await nursery.start(serve)
            except OSError as exc:
                where = f"{options.host}:{options.port}"
                raise CliError(f"cannot listen on {where}: {exc.strerror or exc}") from None
            address = f"{url_host(options.host)}:{listener.port}"
            info = RpcServeInfo(server, listener, address, identity, cert_path)
            stdout.write("\n".join(banner(info, self_signed)) + "\n")
            stdout.flush()
            task_status.started(info)
            await stop.wait()
            await server.shutdown(grace=options.grace)  # serve() returns once done


async def _serve_until_signal(options: RpcServeOptions) -> int:
    signals = [signal.SIGINT]
    if hasattr(signal, "SIGTERM"):
        signals.append(signal.SIGTERM)
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        with trio.open_signal_receiver(*signals) as received:
            await nursery.start(functools.partial(rpc_serve, options, stop, stdout=sys.stdout))
            async for _ in received:
                break
        sys.stderr.write(f"Shutting down (up to {options.grace:g} s for calls in flight)...\n")
        sys.stderr.flush()
        stop.set()
    sys.stderr.write("Stopped.\n")
    return EXIT_OK


def run(args: argparse.Namespace) -> int:
    """``ghostwire rpc-serve``: serves until Ctrl-C (or SIGTERM), then exits 0."""
    options = RpcServeOptions.from_namespace(args)
    try:
        return trio.run(_serve_until_signal, options)
    except BaseException as exc:
        if has_keyboard_interrupt(exc):  # a second Ctrl-C during the grace period
            sys.stderr.write("Stopped.\n")
            return EXIT_INTERRUPTED
        error = single_cli_error(exc)
        if error is None:
            raise
        sys.stderr.write(f"{NAME}: {error}\n")
        return error.exit_code
