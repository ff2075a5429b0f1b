"""Every script in ``examples/`` runs as documented: client against server over loopback.

Each example runs as a subprocess, as a user would start it, in an empty
working folder (which must stay empty), bounded by ``fail_after``. Every file
in ``examples/`` must be covered here: :data:`COVERED` names the tests that
run it, and :func:`test_every_example_is_covered` fails for a new one.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio

from ghostwire.certs import CertificateAuthority

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
TIME_LIMIT = 30  # seconds per test; each takes a few

COVERED = {
    "quic_echo_server.py": "test_echo_client_against_echo_server",
    "quic_echo_client.py": "test_echo_client_against_echo_server",
}

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def test_every_example_is_covered() -> None:
    examples = {path.name for path in EXAMPLES.glob("*.py")}
    assert examples == set(COVERED), "add a test for each example (and to COVERED)"


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


@dataclass
class Running:
    process: trio.Process
    output: bytearray

    async def read_until(self, pattern: str) -> re.Match[str]:
        """Read stdout until ``pattern`` matches a line; returns the match."""
        assert self.process.stdout is not None
        while True:
            for line in self.output.decode(errors="replace").splitlines():
                match = re.search(pattern, line)
                if match:
                    return match
            chunk = await self.process.stdout.receive_some()
            assert chunk, f"exited before printing {pattern!r}: {self.output.decode()!r}"
            self.output += chunk

    async def rest_of_stream(self, stream: trio.abc.ReceiveStream | None) -> str:
        assert stream is not None
        data = bytearray()
        while chunk := await stream.receive_some():
            data += chunk
        return data.decode(errors="replace")


@asynccontextmanager
async def running(argv: list[str], cwd: Path) -> AsyncIterator[Running]:
    process = await trio.lowlevel.open_process(
        [sys.executable, *argv],
        cwd=cwd,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        yield Running(process, bytearray())
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def run_client(cwd: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return await trio.run_process(
        [sys.executable, str(EXAMPLES / "quic_echo_client.py"), *args],
        cwd=cwd,
        env=_env(),
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )


async def stop(server: Running) -> tuple[int, str, str]:
    """Ctrl-C the server; its exit code, the rest of its stdout, and its stderr."""
    server.process.send_signal(signal.SIGINT)
    code = await server.process.wait()
    out = server.output.decode() + await server.rest_of_stream(server.process.stdout)
    err = await server.rest_of_stream(server.process.stderr)
    return code, out, err


@pytest.mark.parametrize("ca_option", ["temporary", "--write-ca"])
async def test_echo_client_against_echo_server(tmp_path: Path, ca_option: str) -> None:
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    argv = [str(EXAMPLES / "quic_echo_server.py"), "--port", "0"]
    if ca_option == "--write-ca":
        argv += ["--write-ca", str(tmp_path / "my-ca.pem")]
    with trio.fail_after(TIME_LIMIT):
        async with running(argv, workdir) as server:
            ca_path = Path((await server.read_until(r"its CA is in (\S+)$"))[1])
            port = (await server.read_until(r"echo server on udp://127\.0\.0\.1:(\d+)$"))[1]
            hint = await server.read_until(r"try: (.*)$")
            assert f"--port {port} --cafile {ca_path} " in hint[1]
            reply = await run_client(workdir, "--port", port, "--cafile", str(ca_path), "hi!")
            assert reply.returncode == 0, reply.stderr
            assert re.fullmatch(rb"'hi!' \(rtt \d+\.\d\d ms\)\n", reply.stdout), reply.stdout
            await server.read_until(r"^connection from .* \(echo, ")
            code, out, err = await stop(server)
    assert code == 0, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert out.rstrip().endswith("stopped")
    assert list(workdir.iterdir()) == []  # nothing left in the working folder
    if ca_option == "--write-ca":
        assert ca_path == tmp_path / "my-ca.pem" and await trio.Path(ca_path).exists()
    else:
        assert not await trio.Path(ca_path).exists()  # the temporary folder is gone


async def test_echo_client_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    with trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM) as silent:
        await silent.bind(("127.0.0.1", 0))  # a port nobody answers on
        port = str(silent.getsockname()[1])
        CertificateAuthority.create("unused").write_pem(tmp_path / "ca.pem")
        argv = [str(EXAMPLES / "quic_echo_client.py"), "--port", port]
        argv += ["--cafile", str(tmp_path / "ca.pem")]
        with trio.fail_after(TIME_LIMIT):
            async with running(argv, tmp_path) as client:
                assert client.process.stderr is not None
                said = b""
                while b"connecting to" not in said:
                    chunk = await client.process.stderr.receive_some()
                    assert chunk, said
                    said += chunk
                client.process.send_signal(signal.SIGINT)
                code = await client.process.wait()
                err = said.decode() + await client.rest_of_stream(client.process.stderr)
    assert code == 130
    assert "Traceback" not in err
    assert err.rstrip().endswith("interrupted")
