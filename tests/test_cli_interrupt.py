"""Ctrl-C at any moment: a command exits 130 with one "PROG: interrupted" line.

trio raises KeyboardInterrupt synchronously in whatever unprotected code runs
when SIGINT arrives; under load that is often one of ghostwire's connection
tasks, in the middle of a state change, and the command then failed in ways
unrelated to Ctrl-C (exit 1 with another error, or a cleanup that never
ended). Commands receive SIGINT with a signal receiver and cancel instead.
These tests raise the signal from inside a background task, deterministically:
``signal.raise_signal`` runs the Python-level handler before it returns.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import trio
import trio.lowlevel

from ghostwire.certs import CertificateAuthority
from ghostwire.cli.common import INTERRUPTION_REPORTED, run_command
from ghostwire.shroud import (
    EchoService,
    GrpcConfig,
    GrpcServer,
    UnifiedServer,
    UnifiedServerConfig,
)

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def test_ctrl_c_in_a_background_task_cancels_instead_of_raising_there(
    capsys: pytest.CaptureFixture[str],
) -> None:
    steps: list[str] = []

    async def main() -> int:
        async with trio.open_nursery() as nursery:

            async def background() -> None:
                try:
                    steps.append("updating")
                    signal.raise_signal(signal.SIGINT)  # Ctrl-C while this task runs
                    steps.append("updated")  # no KeyboardInterrupt in between
                except BaseException:
                    # What a task's cleanup might make of an exception it met
                    # mid-update: another error, and exit 1 (the old failure).
                    raise ConnectionError("connection lost") from None
                await trio.sleep_forever()

            nursery.start_soon(background)
            await trio.sleep_forever()

    assert run_command("prog", main) == 130
    assert steps == ["updating", "updated"]
    assert capsys.readouterr().err == "prog: interrupted\n"


def test_an_error_met_while_cut_off_by_ctrl_c_is_still_an_interruption(
    capsys: pytest.CaptureFixture[str],
) -> None:
    async def main() -> int:
        signal.raise_signal(signal.SIGINT)
        try:
            await trio.sleep_forever()
        finally:
            raise ConnectionError("closed while cancelled")

    assert run_command("prog", main) == 130
    assert capsys.readouterr().err == "prog: interrupted\n"


def test_a_command_that_reported_the_interruption_is_not_echoed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    async def main() -> int:
        signal.raise_signal(signal.SIGINT)
        try:
            await trio.sleep_forever()
        except trio.Cancelled as exc:
            sys.stderr.write("prog: interrupted: 10 of 20 bytes received\n")
            exc.add_note(INTERRUPTION_REPORTED)  # as h3-get does
            raise

    assert run_command("prog", main) == 130
    assert capsys.readouterr().err == "prog: interrupted: 10 of 20 bytes received\n"


def test_a_command_that_finishes_keeps_its_exit_code() -> None:
    async def main() -> int:
        await trio.lowlevel.checkpoint()
        return 3

    assert run_command("prog", main) == 3


def _unified_server(tmp_path: Path) -> UnifiedServer | GrpcServer:
    return UnifiedServer(UnifiedServerConfig(port=0, enable_tls=False, enable_http3=False))


def _grpc_server(tmp_path: Path) -> UnifiedServer | GrpcServer:
    ca = CertificateAuthority.create("ctrl-c test CA")
    ca.issue(["localhost"]).write_pem(tmp_path / "cert.pem", tmp_path / "key.pem")
    config = GrpcConfig(
        address="127.0.0.1",
        port=0,
        cert_path=str(tmp_path / "cert.pem"),
        key_path=str(tmp_path / "key.pem"),
    )
    server = GrpcServer(config)
    server.addService(EchoService)
    return server


@pytest.mark.parametrize("make_server", [_unified_server, _grpc_server])
def test_shroud_start_stops_gracefully_on_ctrl_c(
    make_server: Callable[[Path], UnifiedServer | GrpcServer], tmp_path: Path
) -> None:
    server = make_server(tmp_path)
    ready = threading.Event()

    def ctrl_c_once_ready() -> None:
        if server.waitUntilReady(30):
            ready.set()
            signal.raise_signal(signal.SIGINT)  # delivered to the main thread

    helper = threading.Thread(target=ctrl_c_once_ready)
    helper.start()
    try:
        server.start()  # returns, without KeyboardInterrupt, once stopped
    finally:
        helper.join(30)
    assert ready.is_set()
    assert not server.isRunning()
