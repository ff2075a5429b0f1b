"""Ownership inside the QUIC connection (docs/architecture.md).

The path manager and the frame writer act on the connection through its
state objects' methods; they never assign the connection's fields (the peer
address, validation and amplification counters, the congestion controller,
statistics). Checked on the source: an assignment whose target reaches
through the connection (``conn.x = ...``, ``self.conn.recovery.y += ...``)
fails the test.
"""

from __future__ import annotations

import ast
from pathlib import Path

from quic_pair import CLIENT_ADDR, handshake, make_pair

import ghostwire
from ghostwire.quic.path import AntiAmplification

QUIC = Path(ghostwire.__file__).parent / "quic"
WRITER_MODULES = (
    "frame_writer.py",
    "ack_writer.py",
    "control_writer.py",
    "stream_writer.py",
    "close_writer.py",
)
CHECKED = (QUIC / "path.py", *(QUIC / name for name in WRITER_MODULES))
# Names these modules use for the connection and its recovery state.
CONNECTION_NAMES = {"conn", "connection", "recovery"}
CONNECTION_ATTRIBUTES = {"conn", "_conn", "connection"}


def _reaches_connection(target: ast.expr) -> bool:
    """``target`` is an attribute of an attribute chain rooted at the connection."""
    if not isinstance(target, ast.Attribute):
        return False
    node = target.value
    while isinstance(node, ast.Attribute):
        if (
            node.attr in CONNECTION_ATTRIBUTES
            and isinstance(node.value, ast.Name)
            and node.value.id == "self"
        ):
            return True
        node = node.value
    return isinstance(node, ast.Name) and node.id in CONNECTION_NAMES


def _assigned_targets(tree: ast.AST) -> list[ast.expr]:
    targets: list[ast.expr] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                targets.extend(
                    target.elts if isinstance(target, (ast.Tuple, ast.List)) else [target]
                )
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets.append(node.target)
        elif isinstance(node, ast.Delete):
            targets.extend(node.targets)
    return targets


def connection_assignments(source: str) -> list[str]:
    return sorted(
        f"{target.lineno}: {ast.unparse(target)}"
        for target in _assigned_targets(ast.parse(source))
        if _reaches_connection(target)
    )


def test_path_and_writer_do_not_assign_the_connections_fields() -> None:
    offences = {
        path.name: connection_assignments(path.read_text(encoding="utf-8")) for path in CHECKED
    }
    assert offences == {"path.py": [], **{name: [] for name in WRITER_MODULES}}


def test_the_check_sees_assignments_through_the_connection() -> None:
    source = (
        "conn.peer_address = a\n"
        "self.conn.bytes_sent += 1\n"
        "self._conn.recovery.congestion = c\n"
        "conn.recovery.amplification_blocked, x = True, 1\n"
        "recovery.rtt = r\n"
        "self.deadline = None\n"
        "builder.payload = b''\n"
    )
    assert connection_assignments(source) == [
        "1: conn.peer_address",
        "2: self.conn.bytes_sent",
        "3: self._conn.recovery.congestion",
        "4: conn.recovery.amplification_blocked",
        "5: recovery.rtt",
    ]


def test_the_path_manager_owns_address_and_amplification() -> None:
    pair = handshake(make_pair())
    assert pair.server is not None
    for conn in (pair.client, pair.server):
        assert conn.peer_address is conn.path.address
        assert conn.address_validated is conn.path.amplification.validated is True
        assert conn.amplification_room() is None
    assert pair.server.peer_address == CLIENT_ADDR


def test_anti_amplification_counts_three_times_what_arrived() -> None:
    limit = AntiAmplification(validated=False)
    limit.on_received(1200)
    limit.on_sent(3000)
    assert limit.room() == 600 and limit.has_room()
    limit.on_sent(600)
    assert limit.room() == 0 and not limit.has_room()
    limit.validate()
    assert limit.room() is None
    limit.on_sent(10_000)  # no longer counted
    limit.restart(received=100)
    assert limit.room() == 300
