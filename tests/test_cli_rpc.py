"""``ghostwire rpc-serve``, ``call`` and ``subscribe`` over loopback.

In-process tests run :func:`~ghostwire.cli.rpc_serve.rpc_serve` on a module
written to ``tmp_path`` (a self-signed certificate, as the command makes
one) and drive :func:`~ghostwire.cli.call.call` and
:func:`~ghostwire.cli.subscribe.subscribe` against it in the same
``trio.run``; usage errors go through ``ghostwire.__main__.main``. The real
command line runs in subprocesses: ``call`` against an in-process server, and
``rpc-serve`` serving a Server from a module file until SIGINT, with a call in
flight that finishes within the grace period.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest
import trio

from ghostwire.__main__ import build_parser, main
from ghostwire.certs import CertificateAuthority
from ghostwire.cli.call import RpcOptions, call, dumps, from_json, parse_arguments
from ghostwire.cli.common import CliError
from ghostwire.cli.rpc_serve import RpcServeInfo, RpcServeOptions, load_target, rpc_serve
from ghostwire.cli.subscribe import SubscribeOptions, subscribe

ROOT = Path(__file__).resolve().parent.parent
TIME_LIMIT = 30  # seconds; each test takes a second or two

APP = """
from typing import Any

import trio

import ghostwire.quic as quic
import ghostwire.rpc as rpc
from ghostwire.certs import self_signed_certificate

zvm = rpc.Service("zvm")


@zvm.call
async def get_balance(ctx: rpc.Context, address: bytes) -> int:
    return int.from_bytes(address, "big") * 10**60  # past 64 bits


@zvm.call
async def echo(ctx: rpc.Context, value: Any) -> Any:
    return value


@zvm.call
async def pair(ctx: rpc.Context, first: str, second: int) -> list:
    return [first, second]


@zvm.call
async def whoami(ctx: rpc.Context) -> dict:
    return dict(ctx.metadata)


@zvm.call
async def refuse(ctx: rpc.Context, amount: int) -> None:
    raise rpc.RpcError(rpc.Status.FAILED_PRECONDITION, "insufficient funds", {"needed": amount})


@zvm.call
async def hang(ctx: rpc.Context) -> None:
    await trio.sleep_forever()


@zvm.events
async def logs(ctx: rpc.Context, address: bytes):
    start = 0 if ctx.resume_after is None else ctx.resume_after + 1
    for block in range(start, 6):
        yield rpc.Event({"block": block, "topic": address}, cursor=block)


@zvm.events
async def ticks(ctx: rpc.Context):
    for number in range(10**9):  # until the subscriber leaves
        yield rpc.Event(number, cursor=number)
        await trio.sleep(0.01)


services = [zvm]
_identity = self_signed_certificate(["localhost"])
server = rpc.Server(
    services,
    config=quic.ServerConfig(certificate_chain=_identity.chain, private_key=_identity.private_key),
)
"""

_modules = itertools.count()


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A module file in the current directory (tmp_path); yields its name."""
    name = f"cli_rpc_app_{next(_modules)}"
    (tmp_path / f"{name}.py").write_text(APP)
    monkeypatch.chdir(tmp_path)
    yield name
    sys.modules.pop(name, None)


@dataclass
class Served:
    info: RpcServeInfo
    banner: str

    @property
    def address(self) -> str:
        return self.info.address

    @property
    def cafile(self) -> str:
        assert self.info.cert_path is not None
        return self.info.cert_path


@asynccontextmanager
async def serving(target: str, **options: object) -> AsyncIterator[Served]:
    """``rpc-serve TARGET`` in-process on an ephemeral port; stopped gracefully on exit."""
    out = io.StringIO()
    stop = trio.Event()
    opts = RpcServeOptions(target=target, port=0, **options)  # type: ignore[arg-type]
    with trio.fail_after(TIME_LIMIT):
        async with trio.open_nursery() as nursery:
            info = await nursery.start(partial(rpc_serve, opts, stop, stdout=out))
            yield Served(info, out.getvalue())
            stop.set()


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    @property
    def json(self) -> object:
        return json.loads(self.stdout)

    @property
    def lines(self) -> list[object]:
        return [json.loads(line) for line in self.stdout.splitlines()]


async def run_call_argv(*argv: str) -> Result:
    args = build_parser().parse_args(["call", *argv])
    out, err = io.StringIO(), io.StringIO()
    with trio.fail_after(TIME_LIMIT):
        code = await call(RpcOptions.from_namespace(args), stdout=out, stderr=err)
    return Result(code, out.getvalue(), err.getvalue())


async def run_call(served: Served, *argv: str) -> Result:
    return await run_call_argv("--cafile", served.cafile, served.address, *argv)


async def run_subscribe(served: Served, *argv: str) -> Result:
    argv = ("subscribe", "--cafile", served.cafile, served.address, *argv)
    args = build_parser().parse_args(argv)
    out, err = io.StringIO(), io.StringIO()
    with trio.fail_after(TIME_LIMIT):
        code = await subscribe(SubscribeOptions.from_namespace(args), stdout=out, stderr=err)
    return Result(code, out.getvalue(), err.getvalue())


# -- call ----------------------------------------------------------------------------


async def test_call_with_bytes_returns_an_exact_uint256(app: str) -> None:
    async with serving(f"{app}:zvm") as served:
        result = await run_call(served, "zvm.get_balance", '{"address": "0x0102"}')
        positional = await run_call(served, "zvm.get_balance", '["0x0102"]')
        pairs = await run_call(served, "zvm.get_balance", "address=0x0102")
    assert (result.code, result.stderr) == (0, "")
    assert result.stdout == f"{0x0102 * 10**60}\n"  # exact, not a float
    assert result.json == 258 * 10**60
    assert positional.stdout == pairs.stdout == result.stdout


async def test_results_print_bytes_as_hex_and_round_trip(app: str) -> None:
    value = {
        "0xff00": ["0x", "0xdeadbeef", "plain", -(2**200), 1.5, True, None],
        "nested": {"0x01": "0x02"},
    }
    async with serving(f"{app}:zvm") as served:
        echoed = await run_call(served, "zvm.echo", json.dumps({"value": value}))
        raw = await run_call(served, "zvm.echo", json.dumps([value]), "--raw-strings")
        not_bytes = await run_call(served, "zvm.get_balance", "address=0x01", "--raw-strings")
        pairs = await run_call(served, "zvm.pair", "first=alice", "second=7")
        quoted = await run_call(served, "zvm.pair", 'first="7"', "second=7")
    assert echoed.code == 0, echoed.stderr
    assert echoed.json == value  # bytes went as bytes and came back as "0x..."
    assert raw.json == value
    assert not_bytes.stderr.startswith("error: INVALID_ARGUMENT: ")  # "0x01" went as a str
    assert pairs.json == ["alice", 7] and quoted.json == ["7", 7]


async def test_metadata_reaches_the_handler(app: str) -> None:
    async with serving(f"{app}:zvm") as served:
        result = await run_call(served, "zvm.whoami", "-m", "authorization=Bearer x", "-m", "k=v")
    assert result.json == {"authorization": "Bearer x", "k": "v"}


async def test_rpc_errors_are_one_line_and_exit_1(app: str) -> None:
    async with serving(f"{app}:zvm") as served:
        wrong_type = await run_call(served, "zvm.get_balance", "address=hello")
        unknown = await run_call(served, "zvm.nope")
        refused = await run_call(served, "zvm.refuse", f"amount={2**70}")
        late = await run_call(served, "zvm.hang", "--timeout", "0.2")
    assert wrong_type.code == 1 and wrong_type.stdout == ""
    assert wrong_type.stderr.startswith("error: INVALID_ARGUMENT: ")
    assert "address" in wrong_type.stderr and len(wrong_type.stderr.splitlines()) == 1
    assert unknown.stderr == "error: UNIMPLEMENTED: no method 'zvm.nope' on this server\n"
    assert refused.code == 1
    assert refused.stderr.splitlines() == [
        "error: FAILED_PRECONDITION: insufficient funds",
        f'details: {{"needed": {2**70}}}',
    ]
    assert late.code == 1 and late.stderr.startswith("error: DEADLINE_EXCEEDED: ")


async def test_untrusted_server_is_one_line_naming_cafile(app: str) -> None:
    async with serving(f"{app}:zvm") as served:
        args = build_parser().parse_args(["call", served.address, "zvm.echo", "value=1"])
        err = io.StringIO()
        with trio.fail_after(TIME_LIMIT):
            code = await call(RpcOptions.from_namespace(args), stdout=io.StringIO(), stderr=err)
    assert code == 1
    lines = err.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("call: certificate verification failed")
    assert "--cafile" in lines[0]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["localhost:4433", "zvm.echo", "{bad"], "the arguments: not valid JSON"),
        (["localhost:4433", "zvm.echo", "value"], "expected key=value"),
        (["localhost:4433", "zvm.echo", "a=1", "a=2"], "given twice"),
        (["localhost:4433", "echo", "{}"], "method must be 'service.method'"),
        (["localhost", "zvm.echo", "{}"], "address must be 'host:port'"),
        (["-m", "novalue", "localhost:4433", "zvm.echo"], "bad --metadata"),
        (["--cafile", "/nonexistent/ca.pem", "localhost:4433", "zvm.echo"], "cannot load"),
    ],
)
def test_usage_errors_exit_2_before_connecting(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["call", *argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("call: ") and message in captured.err


@pytest.mark.parametrize(
    "argv",
    [["subscribe", "h:1", "s.c", "--count", "0"], ["call", "h:1", "s.m", "--timeout", "-1"]],
)
def test_bad_options_exit_2(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2


def test_json_conversions() -> None:
    assert from_json({"0x00ff": ["0x", "0xABcd", "0x1", "x0x01"]}) == {
        b"\x00\xff": [b"", b"\xab\xcd", "0x1", "x0x01"]
    }
    assert from_json(["0x01"], raw_strings=True) == ["0x01"]
    assert dumps({b"\x01": b"", 7: 2**256, None: (1, 2)}) == (
        f'{{"0x01": "0x", "7": {2**256}, "null": [1, 2]}}'
    )
    assert dumps(float("inf")) == '"inf"'
    assert parse_arguments(["n=1", "s=x y", "l=[1]"]) == ([], {"n": 1, "s": "x y", "l": [1]})


# -- subscribe -----------------------------------------------------------------------


async def test_subscribe_prints_events_until_the_channel_ends(app: str) -> None:
    async with serving(f"{app}:zvm") as served:
        result = await run_subscribe(served, "zvm.logs", "address=0xaa")
    assert (result.code, result.stderr) == (0, "")
    assert result.lines == [{"cursor": n, "data": {"block": n, "topic": "0xaa"}} for n in range(6)]


async def test_subscribe_after_a_cursor_and_count(app: str) -> None:
    async with serving(f"{app}:zvm") as served:
        result = await run_subscribe(
            served, "zvm.logs", '{"address": "0xaa"}', "--after", "2", "--count", "2"
        )
    assert (result.code, result.stderr) == (0, "")
    assert [line["cursor"] for line in result.lines] == [3, 4]  # type: ignore[index]


async def test_subscribe_errors(app: str) -> None:
    async with serving(f"{app}:zvm") as served:
        unknown = await run_subscribe(served, "zvm.nope")
        wrong = await run_subscribe(served, "zvm.logs", "address=1")
    assert unknown.code == 1 and unknown.stderr.startswith("error: UNIMPLEMENTED: ")
    assert wrong.code == 1 and wrong.stderr.startswith("error: INVALID_ARGUMENT: ")


class ClosedPipe(io.StringIO):
    def write(self, text: str) -> int:
        raise BrokenPipeError


async def test_subscribe_stops_quietly_when_stdout_closes(app: str) -> None:
    async with serving(f"{app}:zvm") as served:
        args = build_parser().parse_args(
            ["subscribe", "--cafile", served.cafile, served.address, "zvm.ticks"]
        )
        err = io.StringIO()
        with trio.fail_after(TIME_LIMIT):
            options = SubscribeOptions.from_namespace(args)
            code = await subscribe(options, stdout=ClosedPipe(), stderr=err)
    assert (code, err.getvalue()) == (1, "")  # as h3-get: no message, exit 1


# -- rpc-serve -----------------------------------------------------------------------


async def test_rpc_serve_banner_and_a_list_of_services(app: str) -> None:
    async with serving(f"{app}:services") as served:
        result = await run_call(served, "zvm.echo", "value=0x01")
        assert await trio.Path(served.cafile).read_bytes() == served.info.certificate.cert_pem()
    assert result.stdout == '"0x01"\n'
    assert served.address.startswith("127.0.0.1:")
    assert "  zvm.logs (events)\n" in served.banner
    assert f"written to {served.cafile}" in served.banner
    assert f"ghostwire call --cafile {served.cafile} {served.address} zvm." in served.banner
    assert not await trio.Path(served.cafile).exists()  # the temporary certificate is removed


async def test_rpc_serve_a_server_with_a_given_certificate(app: str, tmp_path: Path) -> None:
    ca = CertificateAuthority.create("rpc-serve test CA")
    ca.issue(["localhost", "127.0.0.1"]).write_pem(tmp_path / "cert.pem", tmp_path / "key.pem")
    ca.write_pem(tmp_path / "ca.pem")
    target = f"{app}:server"
    async with serving(target, certfile="cert.pem", keyfile="key.pem") as served:
        args = ["--cafile", "ca.pem", served.address, "zvm.echo", "value=1"]
        result = await run_call_argv(*args)
    assert served.info.cert_path is None and "certificate: CN=" in served.banner
    assert "--cafile CA.pem" in served.banner
    assert result.stdout == "1\n"


def test_load_target_refuses_what_it_cannot_serve(app: str) -> None:
    for spec, message in [
        ("nomodule_here:zvm", "cannot import"),
        (f"{app}:missing", "no attribute"),
        (f"{app}:trio", "expected an rpc.Service"),
        (app, "expected MODULE:ATTR"),
    ]:
        with pytest.raises(CliError, match=message) as raised:
            load_target(spec)
        assert raised.value.exit_code == 2


# -- the real command line -----------------------------------------------------------


def _env() -> dict[str, str]:
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), path]))}


async def test_subprocess_call(app: str) -> None:
    async with serving(f"{app}:zvm") as served:
        command = [sys.executable, "-m", "ghostwire", "call", "--cafile", served.cafile]
        with trio.fail_after(TIME_LIMIT):
            ok = await trio.run_process(
                [*command, served.address, "zvm.get_balance", "address=0x01"],
                capture_stdout=True,
                capture_stderr=True,
                check=False,
                env=_env(),
            )
            failed = await trio.run_process(
                [*command, served.address, "zvm.refuse", "amount=1"],
                capture_stdout=True,
                capture_stderr=True,
                check=False,
                env=_env(),
            )
    assert (ok.returncode, ok.stderr) == (0, b"")
    assert ok.stdout == f"{10**60}\n".encode()
    assert failed.returncode == 1
    assert (
        failed.stderr.decode().splitlines()[0] == "error: FAILED_PRECONDITION: insufficient funds"
    )


SERVER_APP = """
import trio

import ghostwire.quic as quic
import ghostwire.rpc as rpc

svc = rpc.Service("svc")


@svc.call
async def wait_for_shutdown(ctx: rpc.Context) -> str:
    print("call started", flush=True)
    while not server.draining:  # finishes only once the shutdown began
        await trio.sleep(0.01)
    return "finished during the grace period"


config = quic.ServerConfig(alpn=[rpc.ALPN], certfile="cert.pem", keyfile="key.pem")
server = rpc.Server([svc], config=config)
"""


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
async def test_subprocess_rpc_serve_stops_gracefully_on_ctrl_c(tmp_path: Path) -> None:
    ca = CertificateAuthority.create("rpc-serve test CA")
    identity = ca.issue(["localhost", "127.0.0.1"])
    (tmp_path / "ca.pem").write_bytes(ca.cert_pem())
    (tmp_path / "cert.pem").write_bytes(identity.cert_pem())
    (tmp_path / "key.pem").write_bytes(identity.key_pem())
    (tmp_path / "served_app.py").write_text(textwrap.dedent(SERVER_APP))
    with trio.fail_after(TIME_LIMIT):
        process = await trio.lowlevel.open_process(
            [sys.executable, "-m", "ghostwire", "rpc-serve", "served_app:server", "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=tmp_path,
            env=_env(),
        )
        try:
            assert process.stdout is not None and process.stderr is not None
            output = b""
            while b"Press Ctrl-C to stop." not in output:
                chunk = await process.stdout.receive_some()
                assert chunk, output
                output += chunk
            match = re.search(rb"at (127\.0\.0\.1:\d+)", output)
            assert match, output
            address, cafile = match[1].decode(), str(tmp_path / "ca.pem")
            args = build_parser().parse_args(
                ["call", "--cafile", cafile, address, "svc.wait_for_shutdown"]
            )
            out, err = io.StringIO(), io.StringIO()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(
                    partial(call, RpcOptions.from_namespace(args), stdout=out, stderr=err)
                )
                while b"call started" not in output:
                    chunk = await process.stdout.receive_some()
                    assert chunk, output
                    output += chunk
                process.send_signal(signal.SIGINT)
            assert await process.wait() == 0
            errors = b""
            while chunk := await process.stderr.receive_some():
                errors += chunk
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    assert (out.getvalue(), err.getvalue()) == ('"finished during the grace period"\n', "")
    assert b"Traceback" not in errors
    assert errors.decode().splitlines() == [
        "Shutting down (up to 5 s for calls in flight)...",
        "Stopped.",
    ]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
async def test_subprocess_subscribe_ctrl_c_exits_130(app: str) -> None:
    async with serving(f"{app}:zvm") as served:
        with trio.fail_after(TIME_LIMIT):
            process = await trio.lowlevel.open_process(
                [
                    sys.executable,
                    "-m",
                    "ghostwire",
                    "subscribe",
                    "--cafile",
                    served.cafile,
                    served.address,
                    "zvm.ticks",
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=_env(),
            )
            try:
                assert process.stdout is not None and process.stderr is not None
                output = b""
                while b"\n" not in output:
                    chunk = await process.stdout.receive_some()
                    assert chunk, output
                    output += chunk
                process.send_signal(signal.SIGINT)
                while chunk := await process.stdout.receive_some():
                    output += chunk
                assert await process.wait() == 130
                errors = b""
                while chunk := await process.stderr.receive_some():
                    errors += chunk
            finally:
                if process.returncode is None:
                    process.kill()
                    await process.wait()
    lines = [json.loads(line) for line in output.decode().splitlines()]
    assert lines[0] == {"cursor": 0, "data": 0}
    assert [line["cursor"] for line in lines] == list(range(len(lines)))  # whole lines, in order
    assert errors.decode().splitlines() == ["subscribe: interrupted"]
