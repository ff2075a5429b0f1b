"""What the client commands share: trusting the server, and saying why a connection failed.

``h3-get`` uses these; any command that connects (an RPC ``call``, say) should
too, so that ``--cafile`` / ``--insecure`` and the one-line reasons read the same
everywhere.
"""

from __future__ import annotations

import argparse
import socket
import warnings
from collections.abc import Sequence
from typing import TextIO

import trio

from ..http3.errors import RequestTimeout
from ..quic.config import ClientConfig, InsecureConfigurationWarning
from ..quic.net.exceptions import CertificateError, HandshakeError, HandshakeTimeout, QuicError
from .common import EXIT_USAGE, CliError, one_line

CONNECTION_ERRORS = (QuicError, trio.BrokenResourceError, trio.TooSlowError, OSError)
"""The failures :func:`describe_connection_failure` explains (others are bugs)."""


def add_trust_arguments(parser: argparse.ArgumentParser) -> None:
    """``--cafile FILE`` or ``-k/--insecure`` (one or the other)."""
    trust = parser.add_mutually_exclusive_group()
    trust.add_argument("--cafile", metavar="FILE", help="trust the CA certificate(s) in FILE (PEM)")
    trust.add_argument(
        "-k",
        "--insecure",
        action="store_true",
        help="do not verify the server's certificate (anyone can impersonate it)",
    )


def client_config(
    alpn: Sequence[str],
    *,
    cafile: str | None,
    insecure: bool,
    timeout: float,
    prog: str,
    stderr: TextIO,
) -> ClientConfig:
    """The client's QUIC config; an unreadable ``--cafile`` is a usage error.

    ``--insecure`` gets one warning line on ``stderr`` (``prog: warning: ...``)
    instead of a Python warning.
    """
    if insecure:
        stderr.write(
            f"{prog}: warning: --insecure: the server's certificate is NOT verified; "
            "anyone on the path can impersonate it\n"
        )
        stderr.flush()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", InsecureConfigurationWarning)
            return ClientConfig(alpn=list(alpn), verify=False, handshake_timeout=timeout)
    try:
        return ClientConfig(alpn=list(alpn), cafile=cafile, handshake_timeout=timeout)
    except (OSError, ValueError) as exc:
        raise CliError(f"cannot load --cafile {cafile}: {exc}", EXIT_USAGE) from None


def describe_connection_failure(error: BaseException, target: str, timeout: float) -> str | None:
    """One line saying why connecting to (or talking with) ``target`` failed; None if not ours."""
    if isinstance(error, CertificateError):
        hint = "use --cafile FILE to trust the server's certificate, or --insecure to skip checks"
        return one_line(f"certificate verification failed for {target}: {error} ({hint})")
    if isinstance(error, HandshakeTimeout | trio.TooSlowError | RequestTimeout):
        detail = str(error) or f"no answer within {timeout:g} s"
        return one_line(f"cannot reach {target}: timed out ({detail})")
    if isinstance(error, HandshakeError):
        return one_line(f"cannot connect to {target}: {error}")
    if isinstance(error, socket.gaierror):
        return one_line(f"cannot resolve {target}: {error.strerror or error}")
    if isinstance(error, QuicError | trio.BrokenResourceError):
        return one_line(f"connection to {target} failed: {error}")
    if isinstance(error, OSError):
        return one_line(f"{error}")
    return None
