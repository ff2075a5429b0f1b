"""``ghostwire h3-serve --root DIR``: serve a folder over HTTP/3 until Ctrl-C.

GET and HEAD, directory listings and ``index.html`` (:mod:`.directory`), with
a fresh self-signed certificate unless one is given.

:func:`h3_serve` is an async function for ``nursery.start``: it binds, prints
the banner, reports a :class:`ServeInfo` and serves until cancelled, so tests
drive it in-process; :func:`run` is the synchronous entry point (``trio.run``,
signals, exit codes). Ctrl-C (or SIGTERM) stops it gracefully: each
connection gets GOAWAY, responses in progress get ``--grace`` seconds to be
delivered, and what is still unfinished then is reset, so its client knows
the response is incomplete.
"""

from __future__ import annotations

import argparse
import functools
import os
import signal
import sys
import tempfile
from dataclasses import dataclass
from typing import NoReturn, TextIO
from urllib.parse import urlsplit

import trio

from ..certs import IssuedCertificate, self_signed_certificate
from ..http3.net.server import serve
from ..quic.config import ServerConfig
from ..quic.net.api import QuicServer
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
from .directory import DirectoryApp

NAME = "h3-serve"
HELP = "serve a folder over HTTP/3"
DESCRIPTION = "Serve a folder over HTTP/3 (GET and HEAD) until Ctrl-C."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``h3-serve`` options."""
    parser.add_argument("--root", required=True, metavar="DIR", help="folder to serve")
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
        help="on Ctrl-C, time given to requests in progress (default 5)",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no access log on stderr")


@dataclass
class ServeOptions:
    """What ``h3-serve`` was asked to do (see :func:`add_arguments`)."""

    root: str
    host: str = "127.0.0.1"
    port: int = 4433
    certfile: str | None = None
    keyfile: str | None = None
    grace: float = 5.0
    quiet: bool = False

    @classmethod
    def from_namespace(cls, args: argparse.Namespace) -> ServeOptions:
        return cls(
            root=args.root,
            host=args.host,
            port=args.port,
            certfile=args.certfile,
            keyfile=args.keyfile,
            grace=args.grace,
            quiet=args.quiet,
        )


@dataclass
class ServeInfo:
    """What :func:`h3_serve` reports once it listens."""

    server: QuicServer
    url: str
    certificate: IssuedCertificate
    self_signed: bool
    cert_path: str | None
    """The self-signed certificate as PEM, to pass to ``h3-get --cafile``."""


_UNSPECIFIED = ("", "0.0.0.0", "::")


def certificate_names(host: str) -> list[str]:
    """The names a self-signed certificate for ``h3-serve --host host`` covers."""
    names = ["localhost", "127.0.0.1", "::1"]
    if host not in _UNSPECIFIED and host not in names:
        names.append(host)
    return names


def url_host(host: str) -> str:
    """How ``host`` appears in a URL (a wildcard address becomes loopback)."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def _load_identity(options: ServeOptions) -> tuple[ServerConfig, IssuedCertificate, bool]:
    if options.certfile is None:
        if options.keyfile is not None:
            raise CliError("--keyfile needs --certfile", EXIT_USAGE)
        identity = self_signed_certificate(certificate_names(options.host))
        config = ServerConfig(
            alpn=["h3"], certificate_chain=identity.chain, private_key=identity.private_key
        )
        return config, identity, True
    try:
        config = ServerConfig(alpn=["h3"], certfile=options.certfile, keyfile=options.keyfile)
    except (OSError, ValueError) as exc:
        raise CliError(f"cannot load the certificate: {exc}", EXIT_USAGE) from None
    identity = IssuedCertificate(
        config.certificate_chain[0], config.private_key, list(config.certificate_chain)
    )
    return config, identity, False


def banner(info: ServeInfo, root: str) -> list[str]:
    """What ``h3-serve`` prints once it listens."""
    host_port = urlsplit(info.url).netloc
    spki = info.certificate.spki_sha256_base64()
    lines = [f"Serving {root} over HTTP/3 at {info.url}"]
    if info.self_signed:
        names = ", ".join(certificate_names_of(info.certificate))
        lines.append(f"  self-signed certificate for {names}")
    else:
        lines.append(f"  certificate: {info.certificate.certificate.subject.rfc4514_string()}")
    lines += [
        f"  SHA-256 fingerprint: {info.certificate.sha256_fingerprint()}",
        f"  SPKI SHA-256 (base64): {spki}",
    ]
    if info.cert_path is not None:
        lines.append(f"  trust it: ghostwire h3-get --cafile {info.cert_path} {info.url}")
    if info.self_signed:
        lines.append(
            "  Chrome: --origin-to-force-quic-on="
            f"{host_port} --ignore-certificate-errors-spki-list={spki}"
        )
    lines.append("Press Ctrl-C to stop.")
    return lines


def certificate_names_of(identity: IssuedCertificate) -> list[str]:
    from cryptography import x509

    try:
        san = identity.certificate.extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        ).value
    except x509.ExtensionNotFound:
        return []
    names: list[str] = [str(n) for n in san.get_values_for_type(x509.DNSName)]
    names += [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    return names


async def h3_serve(
    options: ServeOptions,
    *,
    stdout: TextIO,
    stderr: TextIO,
    task_status: trio.TaskStatus[ServeInfo] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Serve ``options.root`` over HTTP/3 until cancelled; reports a :class:`ServeInfo`.

    When cancelled, connections get GOAWAY and ``options.grace`` seconds to
    finish the requests in progress.
    """
    try:
        app = DirectoryApp(options.root, access_log=None if options.quiet else stderr)
    except OSError:
        raise CliError(f"--root {options.root}: not a directory", EXIT_USAGE) from None
    config, identity, self_signed = _load_identity(options)
    with tempfile.TemporaryDirectory(prefix="ghostwire-h3-serve-") as tmp:
        cert_path: str | None = None
        if self_signed:
            cert_path = os.path.join(tmp, "cert.pem")
            await trio.Path(cert_path).write_bytes(identity.cert_pem())
        async with trio.open_nursery() as nursery:
            try:
                server: QuicServer = await nursery.start(
                    _serve_app, app, options.host, options.port, config, options.grace
                )
            except OSError as exc:
                where = f"{options.host}:{options.port}"
                raise CliError(f"cannot listen on {where}: {exc.strerror or exc}") from None
            url = f"https://{url_host(options.host)}:{server.port}/"
            info = ServeInfo(server, url, identity, self_signed, cert_path)
            stdout.write("\n".join(banner(info, app.root)) + "\n")
            stdout.flush()
            task_status.started(info)
            await trio.sleep_forever()
    raise AssertionError("unreachable")  # pragma: no cover


async def _serve_app(
    app: DirectoryApp,
    host: str,
    port: int,
    config: ServerConfig,
    grace: float,
    *,
    task_status: trio.TaskStatus[QuicServer] = trio.TASK_STATUS_IGNORED,
) -> None:
    await serve(app, port, config, host=host, shutdown_timeout=grace, task_status=task_status)


async def _serve_until_signal(options: ServeOptions) -> int:
    signals = [signal.SIGINT]
    if hasattr(signal, "SIGTERM"):
        signals.append(signal.SIGTERM)
    async with trio.open_nursery() as nursery:
        with trio.open_signal_receiver(*signals) as received:
            await nursery.start(
                functools.partial(h3_serve, options, stdout=sys.stdout, stderr=sys.stderr)
            )
            async for _ in received:
                break
        sys.stderr.write(f"Shutting down (up to {options.grace:g} s for requests in progress)...\n")
        sys.stderr.flush()
        nursery.cancel_scope.cancel()
    sys.stderr.write("Stopped.\n")
    return EXIT_OK


def run(args: argparse.Namespace) -> int:
    """``ghostwire h3-serve``: serves until Ctrl-C (or SIGTERM), then exits 0."""
    options = ServeOptions.from_namespace(args)
    try:
        return trio.run(_serve_until_signal, options)
    except BaseException as exc:
        if has_keyboard_interrupt(exc):  # a second Ctrl-C during the grace period
            sys.stderr.write("Stopped.\n")
            return EXIT_INTERRUPTED
        error = single_cli_error(exc)
        if error is None:
            raise
        sys.stderr.write(f"h3-serve: {error}\n")
        return error.exit_code
