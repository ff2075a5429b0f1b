"""The same behaviour across processes: a server in a subprocess is killed
with SIGKILL in the middle of a subscription (no CONNECTION_CLOSE, no
goodbye) and started again on the same port; the subscriber's cursors have
no gap and no duplicate."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import trio
from quic_pair import server_identity
from test_rpc_faults_support import HOST, fast_options
from test_rpc_support import rpc_client_config

import ghostwire.rpc as rpc

TESTS = Path(__file__).parent
SCRIPT = TESTS / "rpc_subprocess_server.py"

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")


async def start_server(certfile: Path, keyfile: Path, port: int) -> tuple[trio.Process, int]:
    """Start the server process; returns once it listens, with its port."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS.parent), str(TESTS)]))
    process = await trio.lowlevel.open_process(
        [sys.executable, str(SCRIPT), str(certfile), str(keyfile), str(port)],
        stdout=subprocess.PIPE,
        env=env,
    )
    assert process.stdout is not None
    output = b""
    while b"\n" not in output:
        chunk = await process.stdout.receive_some()
        if not chunk:
            raise AssertionError(f"the server process ended early: {output!r}")
        output += chunk
    line = output.decode().splitlines()[0]
    assert line.startswith("port ")
    return process, int(line.split()[1])


async def stop(process: trio.Process) -> None:
    if process.returncode is None:
        process.kill()
    await process.wait()


async def test_server_process_sigkilled_mid_subscription(tmp_path: Path) -> None:
    certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
    server_identity().write_pem(certfile, keyfile)
    seen: list[int] = []
    with trio.fail_after(60):
        process, port = await start_server(certfile, keyfile, 0)
        address = f"{HOST}:{port}"
        try:
            async with rpc.connect(
                address, config=rpc_client_config(), options=fast_options()
            ) as client:
                async with client.subscribe("chain.heads") as events:
                    async for event in events:
                        seen.append(event.cursor)
                        if event.cursor == 20:
                            process.send_signal(signal.SIGKILL)
                            await process.wait()
                            assert process.returncode == -signal.SIGKILL
                            # only an unanswered ping can tell
                            await client.wait_for_state(
                                address,
                                rpc.ConnectivityState.TRANSIENT_FAILURE,
                                rpc.ConnectivityState.CONNECTING,
                            )
                            process, again = await start_server(certfile, keyfile, port)
                            assert again == port
                        if event.cursor == 60:
                            break
                    reconnects = events.reconnects
        finally:
            with trio.CancelScope(shield=True):
                await stop(process)
    assert seen == list(range(61))
    assert reconnects == 1
