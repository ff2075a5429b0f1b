"""A user's trio program Ctrl-C'd while ghostwire connections are open ends
with KeyboardInterrupt alone.

trio raises KeyboardInterrupt in whatever unprotected code runs when SIGINT
arrives. Raised in a connection's own task, its cleanup closed the connection
and woke the caller's ``connect`` with a HandshakeError beside it (an
exception group, not a KeyboardInterrupt). ghostwire's background tasks are
KI-protected: trio raises it in the main task instead, at its next checkpoint.
The signal is raised from inside the connection task, deterministically
(``signal.raise_signal`` runs the Python-level handler before it returns).
"""

from __future__ import annotations

import signal
import socket
import sys
from pathlib import Path

import pytest
import trio

import ghostwire.quic as quic
from ghostwire.certs import CertificateAuthority
from ghostwire.quic.connection import QuicConnection

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def test_ctrl_c_in_a_connection_task_is_a_keyboard_interrupt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    CertificateAuthority.create("unused").write_pem(tmp_path / "ca.pem")
    fired: list[str] = []
    get_timer = QuicConnection.get_timer

    def ctrl_c_in_the_connection_task(core: QuicConnection) -> float | None:
        task = trio.lowlevel.current_task().name
        if not fired and task.endswith("Connection._run"):
            fired.append(task)
            signal.raise_signal(signal.SIGINT)  # while the connection's task runs
        return get_timer(core)

    monkeypatch.setattr(QuicConnection, "get_timer", ctrl_c_in_the_connection_task)

    async def program(port: int) -> None:
        config = quic.ClientConfig(
            alpn=["echo"], cafile=str(tmp_path / "ca.pem"), server_name="localhost"
        )
        async with quic.connect("127.0.0.1", port, config):
            pass  # never reached: nobody answers

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))  # a port nobody answers on
        with pytest.raises(BaseException) as raised:
            trio.run(program, silent.getsockname()[1])
    assert fired
    assert type(raised.value) is KeyboardInterrupt, repr(raised.value)
