"""NSS key log lines (the SSLKEYLOGFILE format Wireshark reads).

Theory of operation: the handshake calls ``settings.keylog(line)`` once per
traffic secret it derives, only when the user asked for it. Each line is
``<label> <client_random hex> <secret hex>`` without a newline; the caller
decides where lines go. This is the only place secrets are turned into text.
"""

from __future__ import annotations

from collections.abc import Callable

CLIENT_EARLY = "CLIENT_EARLY_TRAFFIC_SECRET"
CLIENT_HANDSHAKE = "CLIENT_HANDSHAKE_TRAFFIC_SECRET"
SERVER_HANDSHAKE = "SERVER_HANDSHAKE_TRAFFIC_SECRET"
CLIENT_TRAFFIC_0 = "CLIENT_TRAFFIC_SECRET_0"
SERVER_TRAFFIC_0 = "SERVER_TRAFFIC_SECRET_0"


def keylog_line(label: str, client_random: bytes, secret: bytes) -> str:
    """One NSS key log line (no trailing newline)."""
    return f"{label} {client_random.hex()} {secret.hex()}"


def log_secret(
    keylog: Callable[[str], None] | None, label: str, client_random: bytes, secret: bytes
) -> None:
    """Send a line to ``keylog`` if key logging is on."""
    if keylog is not None:
        keylog(keylog_line(label, client_random, secret))
