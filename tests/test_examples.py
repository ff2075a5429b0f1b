"""Every script in ``examples/`` runs as documented: client against server over loopback.

Each example runs as a subprocess, as a user would start it, in an empty
working folder (which must stay empty), bounded by ``fail_after``. Every file
in ``examples/`` must be covered here: :data:`COVERED` names the tests that
run it, and :func:`test_every_example_is_covered` fails for a new one.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

import ghostwire.http3 as http3
from ghostwire.certs import CertificateAuthority

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
TIME_LIMIT = 30  # seconds per test; each takes a few

COVERED = {
    "quic_echo_server.py": "test_echo_client_against_echo_server",
    "quic_echo_client.py": "test_echo_client_against_echo_server",
    "contract_vm_server.py": "test_contract_vm_client_against_its_server",
    "contract_vm_client.py": "test_contract_vm_client_against_its_server",
    "node_wallet.py": "test_wallet_follows_the_node",
    "h3_file_server.py": "test_file_server_serves_the_folder_and_nothing_outside",
    "asgi_starlette.py": "test_starlette_app_over_http3",
    "shroud_app.py": "test_shroud_program_and_its_native_version_answer_alike",
    "shroud_app_native.py": "test_shroud_program_and_its_native_version_answer_alike",
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
    return await run_example(cwd, "quic_echo_client.py", *args)


async def run_example(cwd: Path, script: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    return await trio.run_process(
        [sys.executable, str(EXAMPLES / script), *args],
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


async def test_contract_vm_client_against_its_server(tmp_path: Path) -> None:
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    argv = [str(EXAMPLES / "contract_vm_server.py"), "--port", "0"]
    with trio.fail_after(TIME_LIMIT):
        async with running(argv, workdir) as server:
            ca_path = (await server.read_until(r"its CA is in (\S+)$"))[1]
            port = (await server.read_until(r"contract VM on udp://127\.0\.0\.1:(\d+)$"))[1]
            assert f"--port {port} --cafile {ca_path}" in (await server.read_until(r"try: .*"))[0]
            options = ["--port", port, "--cafile", ca_path]
            session = await run_example(workdir, "contract_vm_client.py", *options)
            assert session.returncode == 0, session.stderr
            out = session.stdout.decode()
            assert re.search(r"^sender holds 970000000000000000000000000000 EXA$", out, re.M)
            assert re.search(r"^recipient holds 30000000000000000000000000000 EXA$", out, re.M)
            assert "overspending is refused: FAILED_PRECONDITION" in out
            cursors = re.findall(r"^log (\[\d+, \d+\]): block", out, re.M)
            assert cursors == ["[1, 0]", "[2, 0]"]  # the token's two Transfer logs
            assert out.rstrip().endswith("last cursor: [2, 0] (resume with --follow --after ...)")

            follow = [
                str(EXAMPLES / "contract_vm_client.py"),
                *options,
                "--follow",
                "--after",
                "2,0",
            ]
            async with running(follow, workdir) as follower:
                first = await follower.read_until(r"^log \[(\d+), 0\]: block \d+ #0: Transfer")
                assert first[1] == "3"  # resumed right after [2, 0]
                again = await run_example(workdir, "contract_vm_client.py", *options)
                assert again.returncode == 0, again.stderr
                await follower.read_until(r"^log \[6, 0\]: ")  # new blocks arrive live
                code, out, err = await stop(server)
                assert code == 0, err
                assert "Traceback" not in err and out.rstrip().endswith("stopped")
                assert follower.process.stderr is not None
                said = b""
                while b"server away" not in said:  # it noticed, and retries
                    chunk = await follower.process.stderr.receive_some()
                    assert chunk, said
                    said += chunk
                assert b"resuming after [6, 0]" in said, said
                follower.process.send_signal(signal.SIGINT)
                assert await follower.process.wait() == 130
                rest = await follower.rest_of_stream(follower.process.stderr)
                assert "Traceback" not in rest and rest.rstrip().endswith("interrupted")
    assert list(workdir.iterdir()) == []  # nothing left in the working folder
    assert not await trio.Path(ca_path).exists()  # the temporary folder is gone


async def test_wallet_follows_the_node(tmp_path: Path) -> None:
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    ca_path = tmp_path / "node-ca.pem"
    argv = [str(EXAMPLES / "node_wallet.py"), "node", "--port", "0", "--block-time", "0.05"]
    argv += ["--write-ca", str(ca_path), "--seed", "7"]
    with trio.fail_after(TIME_LIMIT):
        async with running(argv, workdir) as node:
            port = (await node.read_until(r"node on udp://127\.0\.0\.1:(\d+)$"))[1]
            await node.read_until(r"try: python examples/node_wallet\.py wallet")
            wallet = await run_example(
                workdir,
                "node_wallet.py",
                "wallet",
                "--port",
                port,
                "--cafile",
                str(ca_path),
                "--blocks",
                "5",
            )
            assert wallet.returncode == 0, wallet.stderr
            out = wallet.stdout.decode()
            assert re.search(r"^wallet 0x77777777\.\.\. holds \d+$", out, re.M)
            heights = [int(h) for h in re.findall(r"^block (\d+) 0x[0-9a-f]{12}: ", out, re.M)]
            assert len(heights) == 5 and heights == list(range(heights[0], heights[0] + 5))
            balances = [int(b) for b in re.findall(r"mine [+-]\d+, balance (\d+)$", out, re.M)]
            mine = [int(m) for m in re.findall(r"mine ([+-]\d+), ", out, re.M)]
            assert all(
                b2 - b1 == m
                for b1, b2, m in zip(balances[:-1], balances[1:], mine[1:], strict=True)
            )
            code, out, err = await stop(node)
    assert code == 0, err
    assert "Traceback" not in err and out.rstrip().endswith("stopped")
    assert list(workdir.iterdir()) == []


async def stopped_cleanly(server: Running) -> str:
    """Ctrl-C ``server``; check it stopped cleanly and return its stdout."""
    code, out, err = await stop(server)
    assert code == 0, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert out.rstrip().endswith("stopped"), out
    return out


def _make_site(root: Path, big: bytes) -> None:
    (root / "docs").mkdir(parents=True)
    (root / "big.bin").write_bytes(big)
    (root / "notes.txt").write_text("hello\n")
    (root / "docs" / "index.html").write_text("<h1>docs</h1>\n")
    (root.parent / "secret.txt").write_text("not for you\n")
    (root / "escape").symlink_to(root.parent / "secret.txt")  # leads out of the root


async def test_file_server_serves_the_folder_and_nothing_outside(tmp_path: Path) -> None:
    workdir, root = tmp_path / "cwd", tmp_path / "public"
    workdir.mkdir()
    big = os.urandom(300_000)  # several flow-control windows' worth of chunks
    _make_site(root, big)
    argv = [str(EXAMPLES / "h3_file_server.py"), "--root", str(root), "--port", "0"]
    with trio.fail_after(TIME_LIMIT):
        async with running(argv, workdir) as server:
            ca_path = (await server.read_until(r"its CA is in (\S+)$"))[1]
            port = (await server.read_until(r" on https://127\.0\.0\.1:(\d+)/$"))[1]
            base = f"https://127.0.0.1:{port}"
            async with http3.Client(cafile=ca_path) as client:
                listing = await client.get(f"{base}/")
                entries = b"big.bin\ndocs/\nescape\nnotes.txt\n"
                assert (listing.status, await listing.read()) == (200, entries)
                response = await client.get(f"{base}/big.bin")
                assert response.header("content-length") == str(len(big))
                assert await response.read() == big
                notes = await client.get(f"{base}/notes.txt")
                assert notes.header("content-type") == "text/plain"
                assert await notes.read() == b"hello\n"
                head = await client.request("HEAD", f"{base}/big.bin")
                assert head.header("content-length") == str(len(big))
                assert await head.read() == b""
                docs = await client.get(f"{base}/docs/")
                assert await docs.read() == b"<h1>docs</h1>\n"
                for outside in ("/../secret.txt", "/%2e%2e/secret.txt", "/escape", "/nope"):
                    refused = await client.get(base + outside)
                    assert refused.status == 404, outside
                    await refused.read()
                posted = await client.post(f"{base}/notes.txt", b"x")
                assert (posted.status, posted.header("allow")) == (405, "GET, HEAD")
            await server.read_until(rf"^GET /big\.bin 200 {len(big)}$")
            out = await stopped_cleanly(server)
    assert "HEAD /big.bin 200 0" in out
    assert list(workdir.iterdir()) == []
    assert not await trio.Path(ca_path).exists()


async def test_starlette_app_over_http3(tmp_path: Path) -> None:
    argv = [str(EXAMPLES / "asgi_starlette.py"), "--port", "0"]
    with trio.fail_after(TIME_LIMIT):
        async with running(argv, tmp_path) as server:
            ca_path = (await server.read_until(r"its CA is in (\S+)$"))[1]
            port = (await server.read_until(r"app on https://127\.0\.0\.1:(\d+)/$"))[1]
            base = f"https://127.0.0.1:{port}"
            async with http3.Client(cafile=ca_path) as client:
                home = await client.get(f"{base}/")
                assert json.loads(await home.read())["http_version"] == "3"
                item = await client.get(f"{base}/items/7?detail=1")
                detail = json.loads(await item.read())
                assert detail["name"] == "lamp" and detail["client"][0] == "127.0.0.1"
                created = await client.post(
                    f"{base}/items",
                    b'{"name": "desk", "price": 99}',
                    headers={"content-type": "application/json"},
                )
                assert created.status == 201 and created.header("location") == "/items/8"
                assert json.loads(await created.read()) == {"id": 8, "name": "desk", "price": 99}
                counted = await client.get(f"{base}/count/500")
                assert await counted.read() == "".join(f"{i}\n" for i in range(1, 501)).encode()
                missing = await client.get(f"{base}/items/99")
                assert missing.status == 404
                await missing.read()
            await stopped_cleanly(server)
    assert list(await trio.Path(tmp_path).iterdir()) == []


async def test_shroud_program_and_its_native_version_answer_alike(tmp_path: Path) -> None:
    """The ported program over HTTP/1.1 (httpx) and HTTP/3, and its native twin
    over HTTP/3, give the same answers to the same requests."""
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    ported = [str(EXAMPLES / "shroud_app.py"), "--port", "0", "--http3-port", "0"]
    native = [str(EXAMPLES / "shroud_app_native.py"), "--port", "0"]
    answers: dict[str, list[tuple[int, Any]]] = {}
    with trio.fail_after(TIME_LIMIT):
        async with running(ported, workdir) as shim, running(native, workdir) as twin:
            tcp = (await shim.read_until(r"^HTTP/1\.1 on http://127\.0\.0\.1:(\d+)/$"))[1]
            udp = (await shim.read_until(r"^HTTP/3 on https://127\.0\.0\.1:(\d+)/$"))[1]
            shim_ca = (await shim.read_until(r"its CA is in (\S+)$"))[1]
            twin_ca = (await twin.read_until(r"its CA is in (\S+)$"))[1]
            twin_udp = (await twin.read_until(r"^HTTP/3 on https://127\.0\.0\.1:(\d+)/$"))[1]
            hint = (await shim.read_until(r"^try: python -m ghostwire h3-get (.*)$"))[1]
            assert hint == f"--cafile {shim_ca} https://127.0.0.1:{udp}/users/1"
            hint = (await twin.read_until(r"^try: python -m ghostwire h3-get (.*)$"))[1]
            assert hint == f"--cafile {twin_ca} 'https://127.0.0.1:{twin_udp}/users/1?fields=name'"
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{tcp}") as h1:
                answers["shim over HTTP/1.1"] = await _exchanges(h1)
                alt_svc = (await h1.get("/")).headers["alt-svc"]
            assert alt_svc == f'h3=":{udp}"; ma=86400'
            for name, port, ca in (("shim", udp, shim_ca), ("native", twin_udp, twin_ca)):
                async with http3.Client(cafile=ca) as h3:
                    answers[f"{name} over HTTP/3"] = await _exchanges(_H3(h3, port))
            await stopped_cleanly(shim)
            await stopped_cleanly(twin)
    expected = [
        (200, {"id": "1", "name": "Ada", "email": "ada@example.test"}),
        (200, {"name": "Ada"}),
        (404, {"error": "no such user"}),
        (201, {"id": "NEW", "name": "Lin", "email": None}),
        (200, {"id": "NEW", "name": "Lin", "email": None}),
        (415, {"error": "send application/json"}),
        (401, {"error": "unauthorized"}),
        (200, "counted"),
        (405, None),
    ]
    for transport, got in answers.items():
        assert got == expected, transport
    assert list(workdir.iterdir()) == []


class _H3:
    """httpx's calls used by :func:`_exchanges`, over ghostwire's HTTP/3 client."""

    def __init__(self, client: http3.Client, port: str) -> None:
        self.client, self.base = client, f"https://127.0.0.1:{port}"

    async def request(
        self, method: str, path: str, *, headers: dict[str, str] | None = None, content: bytes = b""
    ) -> tuple[int, dict[str, str], bytes]:
        url = self.base + path
        response = await self.client.request(method, url, headers=headers, content=content)
        return response.status, dict(response.headers), await response.read()


async def _exchanges(client: Any) -> list[tuple[int, Any]]:
    """The same requests to either program: (status, JSON body) of each. The
    id of the user made by the POST is shown as ``NEW`` (each run makes one)."""
    json_type = {"content-type": "application/json"}
    admin = {"authorization": "Bearer let-me-in"}
    requests: list[tuple[str, str, dict[str, str], bytes]] = [
        ("GET", "/users/1", {}, b""),
        ("GET", "/users/1?fields=name", {}, b""),
        ("GET", "/users/9", {}, b""),
        ("POST", "/users", json_type, b'{"name": "Lin"}'),
        ("GET", "LOCATION", {}, b""),  # the new user, where the POST said
        ("POST", "/users", {"content-type": "text/plain"}, b"Lin"),
        ("GET", "/admin/stats", {}, b""),
        ("GET", "/admin/stats", admin, b""),
        ("DELETE", "/users/1", {}, b""),
    ]
    results: list[tuple[int, Any]] = []
    location = new_id = ""
    for method, target, headers, body in requests:
        path = location if target == "LOCATION" else target
        if isinstance(client, _H3):
            status, fields, data = await client.request(method, path, headers=headers, content=body)
        else:
            reply = await client.request(method, path, headers=headers, content=body)
            status, fields, data = reply.status_code, dict(reply.headers), reply.content
        assert re.fullmatch(r"\d+\.\d\dms", fields["x-response-time"]), fields
        assert fields["x-content-type-options"] == "nosniff"
        if status == 405:
            assert fields["allow"] == "GET"
            results.append((status, None))
            continue
        assert fields["content-type"] == "application/json; charset=utf-8"
        answer = json.loads(data)
        if status == 201:
            location, new_id = fields["location"], answer["id"]
            assert location == f"/users/{new_id}"
        if path == "/admin/stats" and status == 200:
            assert answer["users"] == int(new_id) and answer["requests_handled"] > 0
            answer = "counted"
        elif isinstance(answer, dict) and answer.get("id") == new_id:
            answer["id"] = "NEW"
        results.append((status, answer))
    return results
