"""``ghostwire h3-get`` and ``ghostwire h3-serve``, run in-process over loopback.

The server side is :func:`ghostwire.cli.h3_serve.h3_serve` started in a nursery,
the client side :func:`ghostwire.cli.h3_get.h3_get` returning its exit code; two
tests run the real command line in a subprocess, bounded by ``fail_after``.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import io
import os
import re
import signal
import subprocess
import sys
import warnings
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, cast

import pytest
import trio
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

import ghostwire.http3 as h3
from ghostwire.__main__ import build_parser
from ghostwire.certs import CertificateAuthority, self_signed_certificate
from ghostwire.cli.common import CliError
from ghostwire.cli.directory import DirectoryApp, content_type
from ghostwire.cli.h3_get import GetOptions, h3_get
from ghostwire.cli.h3_serve import (
    ServeInfo,
    ServeOptions,
    certificate_names,
    h3_serve,
    url_host,
)
from ghostwire.cli.progress import Progress, format_progress, format_size
from ghostwire.quic import ClientConfig, ServerConfig

LARGE = 2 * 1024 * 1024 + 12_345  # several flow-control windows and read chunks
TIME_LIMIT = 20  # seconds; every test is far quicker


class FakeTTY(io.StringIO):
    """A text stream that claims to be a terminal."""

    def isatty(self) -> bool:
        return True


@dataclass
class Tree:
    root: Path
    large: bytes
    secret: Path


@pytest.fixture
def tree(tmp_path: Path) -> Tree:
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "docs").mkdir()
    (root / "small.txt").write_text("hello, HTTP/3\n")
    large = os.urandom(LARGE)
    (root / "large.bin").write_bytes(large)
    (root / "sub" / "index.html").write_text("<h1>sub index</h1>\n")
    (root / "docs" / "a b.txt").write_text("spaced\n")
    (root / "docs" / "<x>.json").write_text("{}\n")
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP SECRET\n")
    (root / "escape").symlink_to(secret)
    (root / "inner").symlink_to(root / "small.txt")
    return Tree(root, large, secret)


@dataclass
class Served:
    info: ServeInfo
    banner: str
    log: io.StringIO
    scope: trio.CancelScope
    stopped: trio.Event  # set once h3_serve returned (after its drain)

    @property
    def url(self) -> str:
        return self.info.url

    @property
    def cafile(self) -> str:
        assert self.info.cert_path is not None
        return self.info.cert_path


@asynccontextmanager
async def serving(root: Path, **options: Any) -> AsyncIterator[Served]:
    out, log = io.StringIO(), io.StringIO()
    opts = ServeOptions(root=str(root), port=0, **options)
    scope = trio.CancelScope()  # the server's alone, not the test body's
    stopped = trio.Event()

    async def run(*, task_status: trio.TaskStatus[ServeInfo]) -> None:
        try:
            with scope:
                await h3_serve(opts, stdout=out, stderr=log, task_status=task_status)
        finally:
            stopped.set()

    with trio.fail_after(TIME_LIMIT):
        async with trio.open_nursery() as nursery:
            info: ServeInfo = await nursery.start(run)
            yield Served(info, out.getvalue(), log, scope, stopped)
            scope.cancel()


@dataclass
class Result:
    code: int
    stdout: bytes
    stderr: str


async def get(*argv: str, stderr: io.StringIO | None = None, stdin: bytes = b"") -> Result:
    """Run ``ghostwire h3-get ARGV`` in-process."""
    args = build_parser().parse_args(["h3-get", *argv])
    out = io.BytesIO()
    err = stderr if stderr is not None else io.StringIO()
    with trio.fail_after(TIME_LIMIT):
        code = await h3_get(
            GetOptions.from_namespace(args), stdout=out, stderr=err, stdin=io.BytesIO(stdin)
        )
    return Result(code, out.getvalue(), err.getvalue())


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- downloads ---------------------------------------------------------------------


async def test_small_file_to_stdout(tree: Tree) -> None:
    async with serving(tree.root) as served:
        result = await get("--cafile", served.cafile, served.url + "small.txt")
    assert result.code == 0
    assert result.stdout == b"hello, HTTP/3\n"
    assert result.stderr == ""
    assert re.search(r"GET /small.txt 200 14$", served.log.getvalue(), re.M)


async def test_large_file_to_output_file(tree: Tree, tmp_path: Path) -> None:
    target = tmp_path / "download.bin"
    async with serving(tree.root) as served:
        result = await get("--cafile", served.cafile, "-o", str(target), served.url + "large.bin")
    assert result.code == 0
    assert result.stdout == b""
    assert result.stderr == ""  # stderr is not a terminal: no progress bar
    assert sha256(target.read_bytes()) == sha256(tree.large)


async def test_large_file_to_stdout_binary_safe(tree: Tree) -> None:
    async with serving(tree.root) as served:
        result = await get("--cafile", served.cafile, served.url + "large.bin")
    assert result.code == 0
    assert sha256(result.stdout) == sha256(tree.large)


async def test_progress_bar_on_a_terminal(tree: Tree, tmp_path: Path) -> None:
    terminal = FakeTTY()
    async with serving(tree.root) as served:
        url = served.url + "large.bin"
        result = await get(
            "--cafile", served.cafile, "-o", str(tmp_path / "x"), url, stderr=terminal
        )
        quiet = await get(
            "--cafile", served.cafile, "-s", "-o", str(tmp_path / "y"), url, stderr=FakeTTY()
        )
    assert result.code == 0
    assert result.stderr.startswith("\r")
    assert result.stderr.endswith("\n")
    last = result.stderr.rstrip("\n").split("\r")[-1]
    assert last.startswith("100.0% [")
    assert "2.0 MiB / 2.0 MiB" in last
    assert quiet.code == 0 and quiet.stderr == ""


async def test_no_progress_bar_for_small_files_on_a_terminal(tree: Tree, tmp_path: Path) -> None:
    async with serving(tree.root) as served:
        result = await get(
            "--cafile",
            served.cafile,
            "-o",
            str(tmp_path / "s"),
            served.url + "small.txt",
            stderr=FakeTTY(),
        )
    assert result.code == 0 and result.stderr == ""


async def test_head(tree: Tree) -> None:
    async with serving(tree.root) as served:
        result = await get("--cafile", served.cafile, "-I", served.url + "large.bin")
    assert result.code == 0
    head = result.stdout.decode()
    assert head.startswith("HTTP/3 200 OK\r\n")
    assert f"content-length: {LARGE}\r\n" in head
    assert "content-type: application/octet-stream\r\n" in head
    assert head.endswith("\r\n\r\n")  # headers only
    assert re.search(r"HEAD /large.bin 200 0$", served.log.getvalue(), re.M)  # no body sent


async def test_include_headers(tree: Tree) -> None:
    async with serving(tree.root) as served:
        result = await get("--cafile", served.cafile, "-i", served.url + "small.txt")
    head, _, body = result.stdout.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/3 200 OK\r\n")
    assert b"content-type: text/plain; charset=utf-8" in head
    assert b"last-modified: " in head
    assert body == b"hello, HTTP/3\n"


# -- directories -------------------------------------------------------------------


async def test_directory_index_and_listing(tree: Tree) -> None:
    async with serving(tree.root) as served:
        index = await get("--cafile", served.cafile, served.url + "sub/")
        listing = await get("--cafile", served.cafile, "-i", served.url + "docs/")
        redirect = await get("--cafile", served.cafile, "-i", served.url + "docs?x=1")
        top = await get("--cafile", served.cafile, served.url)
    assert index.code == 0 and index.stdout == b"<h1>sub index</h1>\n"
    assert listing.code == 0
    assert b"content-type: text/html; charset=utf-8" in listing.stdout
    assert b'<a href="a%20b.txt">a b.txt</a>' in listing.stdout
    assert b'<a href="%3Cx%3E.json">&lt;x&gt;.json</a>' in listing.stdout
    assert b'<a href="../">../</a>' in listing.stdout
    assert redirect.code == 0
    assert redirect.stdout.startswith(b"HTTP/3 301 Moved Permanently\r\n")
    assert b"location: /docs/?x=1\r\n" in redirect.stdout
    assert top.code == 0
    for name in (b"docs/", b"sub/", b"small.txt", b"large.bin"):
        assert b'href="' + name + b'"' in top.stdout
    assert b"../" not in top.stdout


# -- errors and path safety ----------------------------------------------------------


async def test_missing_file_is_404_and_exits_1(tree: Tree) -> None:
    async with serving(tree.root) as served:
        result = await get("--cafile", served.cafile, served.url + "nope.txt")
    assert result.code == 1
    assert result.stdout == b"404 Not Found\n"  # the body is still written
    assert result.stderr == f"h3-get: HTTP/3 404 Not Found ({served.url}nope.txt)\n"


async def test_other_methods_are_405(tree: Tree) -> None:
    async with serving(tree.root) as served:
        result = await get("--cafile", served.cafile, "-i", "-d", "x", served.url + "small.txt")
    assert result.code == 1
    assert result.stdout.startswith(b"HTTP/3 405 Method Not Allowed\r\n")
    assert b"allow: GET, HEAD\r\n" in result.stdout


TRAVERSALS = [
    "../secret.txt",
    "%2e%2e/secret.txt",
    "%2E%2E%2Fsecret.txt",
    "..%2fsecret.txt",
    "sub/../../secret.txt",
    "sub/%2e%2e/%2e%2e/secret.txt",
    "%2f..%2fsecret.txt",
    "/" + "../" * 8 + "etc/passwd",
]


async def test_traversal_attempts_over_http3(tree: Tree) -> None:
    async with serving(tree.root) as served:
        for path in TRAVERSALS:
            result = await get("--cafile", served.cafile, served.url + path)
            assert result.code == 1, path
            assert result.stdout == b"404 Not Found\n", path
        absolute = await get("--cafile", served.cafile, served.url + "%2F" + str(tree.secret))
        assert absolute.stdout == b"404 Not Found\n"


def fake_request(path: str, method: str = "GET") -> h3.Request:
    return h3.Request(
        method=method,
        path=path,
        authority="localhost",
        scheme="https",
        headers=[],
        client=("127.0.0.1", 1234),
        _channel=cast(Any, None),  # the directory handler never reads request bodies
    )


async def status_of(app: DirectoryApp, path: str, method: str = "GET") -> tuple[int, bytes]:
    response = await app(fake_request(path, method))
    assert isinstance(response.content, bytes)  # errors and small bodies here
    return response.status, response.content


@pytest.mark.parametrize(
    "path",
    [
        *("/" + p for p in TRAVERSALS),
        "//" + "x/../" * 2 + "../secret.txt",
        "/sub/..%5c..%5csecret.txt",
        "/%00/small.txt",
        "/%ff%fe",
    ],
)
async def test_traversal_is_404(tree: Tree, path: str) -> None:
    assert await status_of(DirectoryApp(tree.root), path) == (404, b"404 Not Found\n")


async def test_absolute_paths_stay_inside_the_root(tree: Tree) -> None:
    app = DirectoryApp(tree.root)
    for path in (str(tree.secret), "/" + str(tree.secret), "/%2F" + str(tree.secret)[1:]):
        assert await status_of(app, path) == (404, b"404 Not Found\n")
    # Not origin-form at all: bad request.
    assert (await status_of(app, "etc/passwd"))[0] == 400
    assert (await status_of(app, f"https://localhost/{tree.secret}"))[0] == 400


async def test_symlink_escape_is_403_and_inner_symlink_is_served(tree: Tree) -> None:
    async with serving(tree.root) as served:
        escape = await get("--cafile", served.cafile, served.url + "escape")
        inner = await get("--cafile", served.cafile, served.url + "inner")
    assert escape.code == 1 and escape.stdout == b"403 Forbidden\n"
    assert b"SECRET" not in escape.stdout
    assert inner.code == 0 and inner.stdout == b"hello, HTTP/3\n"


async def test_access_log_escapes_control_characters(tree: Tree) -> None:
    log = io.StringIO()
    app = DirectoryApp(tree.root, access_log=log)
    response = await app(fake_request("/a\nb\x1b[2J"))
    assert response.status == 404 and response.on_end is not None
    assert log.getvalue() == ""  # written once the response ended
    response.on_end(h3.ResponseEnd(complete=True, body_bytes=14))
    assert log.getvalue() == "127.0.0.1:1234 GET /a\\x0ab\\x1b[2J 404 14\n"


async def test_symlinked_directory_escape_is_403(tree: Tree) -> None:
    (tree.root / "up").symlink_to(tree.secret.parent, target_is_directory=True)
    app = DirectoryApp(tree.root)
    assert (await status_of(app, "/up/secret.txt"))[0] == 403
    assert (await status_of(app, "/up/"))[0] == 403


# -- trust ---------------------------------------------------------------------------


async def test_self_signed_server_is_rejected_without_cafile(tree: Tree) -> None:
    async with serving(tree.root) as served:
        result = await get(served.url + "small.txt")
    assert result.code == 1
    assert result.stdout == b""
    lines = result.stderr.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("h3-get: certificate verification failed")
    assert "--cafile" in lines[0] and "Traceback" not in result.stderr


async def test_insecure_works_and_warns(tree: Tree) -> None:
    async with serving(tree.root) as served:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = await get("--insecure", served.url + "small.txt")
    assert result.code == 0
    assert result.stdout == b"hello, HTTP/3\n"
    assert result.stderr.startswith("h3-get: warning: --insecure")
    assert len(result.stderr.splitlines()) == 1
    assert not caught  # our own line, not a Python warning


async def test_cafile_and_insecure_are_exclusive() -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["h3-get", "--cafile", "x", "-k", "https://localhost/"])


async def test_given_certificate_and_cafile(tree: Tree, tmp_path: Path) -> None:
    ca = CertificateAuthority.create("h3-cli test CA")
    identity = ca.issue(["localhost", "127.0.0.1"])
    identity.write_pem(tmp_path / "cert.pem", tmp_path / "key.pem")
    ca.write_pem(tmp_path / "ca.pem")
    async with serving(
        tree.root, certfile=str(tmp_path / "cert.pem"), keyfile=str(tmp_path / "key.pem")
    ) as served:
        ok = await get("--cafile", str(tmp_path / "ca.pem"), served.url + "small.txt")
        untrusted = await get(served.url + "small.txt")
    assert not served.info.self_signed and served.info.cert_path is None
    assert served.info.certificate.sha256_fingerprint() == identity.sha256_fingerprint()
    assert ok.code == 0 and ok.stdout == b"hello, HTTP/3\n"
    assert untrusted.code == 1 and "certificate verification failed" in untrusted.stderr
    assert "Chrome" not in served.banner


async def test_fingerprint_and_spki_in_the_banner(tree: Tree) -> None:
    async with serving(tree.root) as served:
        pem = await trio.Path(served.cafile).read_bytes()
        port = served.info.server.port
    cert = x509.load_pem_x509_certificate(pem)
    fingerprint = ":".join(f"{b:02X}" for b in cert.fingerprint(hashes.SHA256()))
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    spki_b64 = base64.b64encode(hashlib.sha256(spki).digest()).decode()
    banner = served.banner
    assert banner.startswith(f"Serving {tree.root} over HTTP/3 at https://127.0.0.1:{port}/\n")
    assert f"SHA-256 fingerprint: {fingerprint}\n" in banner
    assert f"SPKI SHA-256 (base64): {spki_b64}\n" in banner
    assert (
        f"--origin-to-force-quic-on=127.0.0.1:{port} "
        f"--ignore-certificate-errors-spki-list={spki_b64}"
    ) in banner
    assert f"--cafile {served.cafile} " in banner
    assert "self-signed certificate for localhost, 127.0.0.1, ::1" in banner
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert {str(ip) for ip in san.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "::1"}


# -- request options ---------------------------------------------------------------


@asynccontextmanager
async def echo_server(seen: list[h3.Request]) -> AsyncIterator[tuple[str, str]]:
    identity = self_signed_certificate(["localhost", "127.0.0.1"])
    config = ServerConfig(
        alpn=["h3"], certificate_chain=identity.chain, private_key=identity.private_key
    )

    async def handler(request: h3.Request) -> h3.Response:
        seen.append(request)
        body = await request.read()
        return h3.Response(200, [("content-type", "text/plain")], sha256(body))

    with trio.fail_after(TIME_LIMIT):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(partial(h3.serve, handler, 0, config, host="127.0.0.1"))
            pem = identity.cert_pem().decode()
            yield f"https://127.0.0.1:{server.port}/echo?q=1", pem
            nursery.cancel_scope.cancel()


async def test_headers_method_and_data_reach_the_server(tmp_path: Path) -> None:
    seen: list[h3.Request] = []
    upload = os.urandom(200_000)
    (tmp_path / "up.bin").write_bytes(upload)
    async with echo_server(seen) as (url, pem):
        (tmp_path / "cert.pem").write_text(pem)
        cafile = str(tmp_path / "cert.pem")
        first = await get("--cafile", cafile, "-H", "X-Test: one two", "-H", "accept:*/*", url)
        posted = await get("--cafile", cafile, "-d", "@" + str(tmp_path / "up.bin"), url)
        put = await get(
            "--cafile", cafile, "-X", "put", "--data-binary", "@-", url, stdin=b"from stdin"
        )
    assert first.code == posted.code == put.code == 0
    assert [r.method for r in seen] == ["GET", "POST", "PUT"]
    assert seen[0].path == "/echo?q=1"
    assert ("x-test", "one two") in seen[0].headers
    assert ("accept", "*/*") in seen[0].headers
    assert posted.stdout == sha256(upload).encode()
    assert put.stdout == sha256(b"from stdin").encode()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-H", "no colon", "https://localhost/"], "bad header 'no colon'"),
        (["-H", ":path: /x", "https://localhost/"], "bad header"),
        (["http://localhost/"], "HTTP/3 URLs are https://"),
        (["https://localhost:99999/"], "bad URL"),
        (["https://[::1/"], "bad URL 'https://[::1/'"),
        (["https://[zz]/"], "bad URL 'https://[zz]/'"),
        (["https://[127.0.0.1]/"], "bad URL"),
        (["--timeout", "0", "https://localhost/"], "--timeout must be positive"),
        (["-d", "@/nonexistent/file", "https://localhost/"], "cannot read /nonexistent/file"),
        (["--cafile", "/nonexistent/ca.pem", "https://localhost/"], "cannot load --cafile"),
    ],
)
async def test_usage_errors_exit_2(argv: list[str], message: str) -> None:
    result = await get(*argv)
    assert result.code == 2
    assert result.stderr.startswith("h3-get: ") and message in result.stderr
    assert len(result.stderr.splitlines()) == 1


@pytest.mark.parametrize("url", ["https://[::1]:4433/", "https://[fe80::1%25eth0]/", "[::1]/x"])
async def test_ipv6_urls_are_accepted(url: str) -> None:
    from ghostwire.cli.h3_get import normalize_url

    assert normalize_url(url).endswith(url.removeprefix("https://"))


@pytest.mark.parametrize("grace", ["-1", "nan", "inf", "soon"])
def test_serve_rejects_a_bad_grace_period(grace: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["h3-serve", "--root", ".", "--grace", grace])
    assert exited.value.code == 2
    assert "--grace" in capsys.readouterr().err


async def test_nothing_listening_times_out_with_one_line() -> None:
    with trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM) as sock:
        await sock.bind(("127.0.0.1", 0))  # a port nobody answers on
        port = sock.getsockname()[1]
        result = await get("--timeout", "0.2", f"https://127.0.0.1:{port}/")
    assert result.code == 1
    assert result.stderr.startswith(f"h3-get: cannot reach 127.0.0.1:{port}: timed out")
    assert len(result.stderr.splitlines()) == 1


async def test_unwritable_output_is_a_usage_error_before_the_request(
    tree: Tree, tmp_path: Path
) -> None:
    missing = tmp_path / "no" / "such" / "file"
    async with serving(tree.root) as served:
        into_missing = await get("--cafile", served.cafile, "-o", str(missing), served.url)
        onto_folder = await get("--cafile", served.cafile, "-o", str(tmp_path), served.url)
    assert into_missing.code == onto_folder.code == 2
    assert into_missing.stderr == (
        f"h3-get: cannot write {missing}: no such folder {str(missing.parent)!r}\n"
    )
    assert onto_folder.stderr == f"h3-get: cannot write {tmp_path}: it is a directory\n"
    assert served.log.getvalue() == ""  # checked first: no request was sent
    assert not missing.parent.exists()


# -- the server's lifecycle -----------------------------------------------------------


async def test_serve_rejects_a_missing_root_and_bad_certificates(tmp_path: Path) -> None:
    out, log = io.StringIO(), io.StringIO()
    with pytest.raises(CliError, match="not a directory"):
        await h3_serve(ServeOptions(root=str(tmp_path / "missing")), stdout=out, stderr=log)
    with pytest.raises(CliError, match="cannot load the certificate"):
        options = ServeOptions(root=str(tmp_path), certfile=str(tmp_path / "none.pem"))
        await h3_serve(options, stdout=out, stderr=log)
    with pytest.raises(CliError, match="--keyfile needs --certfile"):
        options = ServeOptions(root=str(tmp_path), keyfile=str(tmp_path / "key.pem"))
        await h3_serve(options, stdout=out, stderr=log)
    assert out.getvalue() == log.getvalue() == ""


async def test_shutdown_lets_the_download_in_progress_finish(tree: Tree) -> None:
    with trio.fail_after(5):  # stops once the download is done, not after the 10 s grace
        async with serving(tree.root, grace=10) as served:
            config = ClientConfig(alpn=["h3"], cafile=served.cafile)
            async with h3.Client(config) as client:
                response = await client.get(served.url + "large.bin")
                body = bytearray()
                async for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) >= 256 * 1024 and not served.scope.cancel_called:
                        served.scope.cancel()  # what Ctrl-C does: GOAWAY, grace period
                assert served.scope.cancel_called
                assert sha256(bytes(body)) == sha256(tree.large)


DOWNLOADS = 5  # concurrent downloads during the grace period


async def test_shutdown_during_concurrent_downloads_delivers_every_byte(tree: Tree) -> None:
    # Ctrl-C's programmatic equivalent while five downloads are in flight.
    # The clients stop reading until the server is stopping, so when the
    # server closes (right after its last response is acknowledged) part of
    # each body is still in the client's QUIC buffers: it must be delivered.
    stopping = trio.Event()
    paused = 0
    all_paused = trio.Event()
    bodies: list[bytes] = []

    async def download(client: h3.Client, url: str) -> None:
        nonlocal paused
        response = await client.get(url)
        body = bytearray()
        async for chunk in response.iter_bytes():
            body += chunk
            if not stopping.is_set() and len(body) >= 64 * 1024:
                paused += 1
                if paused == DOWNLOADS:
                    all_paused.set()
                await stopping.wait()
        bodies.append(bytes(body))

    with trio.fail_after(TIME_LIMIT):
        async with serving(tree.root, grace=TIME_LIMIT) as served:
            config = ClientConfig(alpn=["h3"], cafile=served.cafile)
            async with trio.open_nursery() as clients:
                async with trio.open_nursery() as downloads:
                    for _ in range(DOWNLOADS):
                        client = await clients.start(_client, config)
                        downloads.start_soon(download, client, served.url + "large.bin")
                    await all_paused.wait()
                    served.scope.cancel()  # GOAWAY and the grace period, as on Ctrl-C
                    stopping.set()
                await served.stopped.wait()  # once every response is delivered, not the grace
                clients.cancel_scope.cancel()
    assert len(bodies) == DOWNLOADS
    assert all(sha256(body) == sha256(tree.large) for body in bodies)
    log = served.log.getvalue().splitlines()
    assert len(log) == DOWNLOADS
    assert all(line.endswith(f" GET /large.bin 200 {LARGE}") for line in log), log


async def _client(
    config: ClientConfig, *, task_status: trio.TaskStatus[h3.Client] = trio.TASK_STATUS_IGNORED
) -> None:
    async with h3.Client(config) as client:
        task_status.started(client)
        await trio.sleep_forever()


async def test_shutdown_after_the_grace_period_resets_unfinished_downloads(tree: Tree) -> None:
    stalled = 0
    all_stalled = trio.Event()
    errors: list[h3.HttpStreamError] = []
    all_failed = trio.Event()

    async def download(client: h3.Client, url: str, server_stopped: trio.Event) -> None:
        nonlocal stalled
        response = await client.get(url)
        received = 0
        with pytest.raises(h3.HttpStreamError) as caught:
            async for chunk in response.iter_bytes():
                received += len(chunk)
                if not server_stopped.is_set():
                    stalled += 1
                    if stalled == DOWNLOADS:
                        all_stalled.set()
                    await server_stopped.wait()  # stalls past the grace period
        assert received < LARGE
        errors.append(caught.value)
        if len(errors) == DOWNLOADS:
            all_failed.set()

    with trio.fail_after(TIME_LIMIT):
        async with serving(tree.root, grace=0.2) as served:
            config = ClientConfig(alpn=["h3"], cafile=served.cafile)
            async with trio.open_nursery() as nursery:
                for _ in range(DOWNLOADS):
                    client = await nursery.start(_client, config)
                    url = served.url + "large.bin"
                    nursery.start_soon(download, client, url, served.stopped)
                await all_stalled.wait()
                served.scope.cancel()
                await served.stopped.wait()
                await all_failed.wait()  # each reader saw the reset or the close
                nursery.cancel_scope.cancel()
    for error in errors:  # the reset (H3_REQUEST_CANCELLED), or the close that says why
        assert "H3_REQUEST_CANCELLED" in str(error) or "cut short" in str(error), error
    log = served.log.getvalue().splitlines()
    assert len(log) == DOWNLOADS
    for line in log:
        match = re.search(r" GET /large.bin 200 (\d+) incomplete$", line)
        assert match and int(match[1]) < LARGE, line


class ProgressWatcher(FakeTTY):
    """A terminal for h3-get's progress bar that tells when the body started to arrive."""

    def __init__(self) -> None:
        super().__init__()
        self.drawn = trio.Event()

    def write(self, text: str) -> int:
        if text.startswith("\r"):
            self.drawn.set()
        return super().write(text)


@asynccontextmanager
async def half_body_server(
    size: int, sent: int, **serve_options: Any
) -> AsyncIterator[tuple[str, str, trio.CancelScope]]:
    """A server whose response announces ``size`` bytes, sends ``sent``, then stalls."""
    identity = self_signed_certificate(["localhost", "127.0.0.1"])
    config = ServerConfig(
        alpn=["h3"], certificate_chain=identity.chain, private_key=identity.private_key
    )

    async def body() -> AsyncIterator[bytes]:
        yield b"x" * sent
        await trio.sleep_forever()

    async def handler(request: h3.Request) -> h3.Response:
        return h3.Response(200, [("content-length", str(size))], body())

    scope = trio.CancelScope()

    async def run(*, task_status: trio.TaskStatus[Any]) -> None:
        with scope:
            await h3.serve(
                handler, 0, config, host="127.0.0.1", task_status=task_status, **serve_options
            )

    async with trio.open_nursery() as nursery:
        server = await nursery.start(run)
        yield f"https://127.0.0.1:{server.port}/", identity.cert_pem().decode(), scope
        scope.cancel()


async def test_a_download_cut_short_says_it_is_incomplete(tmp_path: Path) -> None:
    size, sent = 4 << 20, 1 << 20
    terminal = ProgressWatcher()
    with trio.fail_after(TIME_LIMIT):
        async with half_body_server(size, sent, shutdown_timeout=0) as (url, pem, server):
            (tmp_path / "cert.pem").write_text(pem)
            argv = ["--cafile", str(tmp_path / "cert.pem"), "-o", str(tmp_path / "out"), url]
            async with trio.open_nursery() as nursery:
                results: list[Result] = []

                async def fetch() -> None:
                    results.append(await get(*argv, stderr=terminal))

                nursery.start_soon(fetch)
                await terminal.drawn.wait()  # the body is arriving
                server.cancel()  # no grace: the response is cut short
    (result,) = results
    assert result.code == 1
    last = result.stderr.split("\n")[-2]
    pattern = rf"h3-get: download incomplete: (\d+) of {size} bytes received \(.*\)"
    match = re.fullmatch(pattern, last)
    assert match, result.stderr
    assert 0 < int(match[1]) <= sent  # cut short: not all that was sent arrived
    assert (tmp_path / "out").stat().st_size == int(match[1])  # what arrived is kept


async def test_an_interrupted_download_says_it_is_incomplete(tmp_path: Path) -> None:
    size, sent = 4 << 20, 1 << 20
    terminal = ProgressWatcher()
    with trio.fail_after(TIME_LIMIT):
        async with half_body_server(size, sent) as (url, pem, _server):
            (tmp_path / "cert.pem").write_text(pem)
            argv = ["--cafile", str(tmp_path / "cert.pem"), "-o", str(tmp_path / "out"), url]
            args = build_parser().parse_args(["h3-get", *argv])
            with trio.CancelScope() as interrupt:  # what Ctrl-C does to h3-get's task
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(
                        functools.partial(
                            h3_get,
                            GetOptions.from_namespace(args),
                            stdout=io.BytesIO(),
                            stderr=terminal,
                        )
                    )
                    await terminal.drawn.wait()
                    interrupt.cancel()
    last = terminal.getvalue().split("\n")[-2]
    pattern = rf"h3-get: interrupted: download incomplete: (\d+) of {size} bytes received"
    match = re.fullmatch(pattern, last)
    assert match, terminal.getvalue()
    assert 0 < int(match[1]) <= sent
    assert (tmp_path / "out").stat().st_size == int(match[1])


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
async def test_ctrl_c_during_a_download_says_what_arrived(tmp_path: Path) -> None:
    size, sent = 4 << 20, 1 << 20
    with trio.fail_after(TIME_LIMIT):
        async with half_body_server(size, sent) as (url, pem, _server):
            (tmp_path / "cert.pem").write_text(pem)
            process = await trio.lowlevel.open_process(
                [
                    sys.executable,
                    "-m",
                    "ghostwire",
                    "h3-get",
                    "--cafile",
                    str(tmp_path / "cert.pem"),
                    url,
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            try:
                assert process.stdout is not None and process.stderr is not None
                body = b""
                while len(body) < 256 * 1024:  # h3-get writes in 256 KiB pieces
                    chunk = await process.stdout.receive_some()
                    assert chunk, body
                    body += chunk
                process.send_signal(signal.SIGINT)
                # Drain both pipes while it exits: h3-get may be in the middle
                # of writing a piece larger than the pipe holds.
                out: list[bytes] = []
                err: list[bytes] = []

                async def drain(pipe: trio.abc.ReceiveStream, into: list[bytes]) -> None:
                    while chunk := await pipe.receive_some():
                        into.append(bytes(chunk))

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(drain, process.stdout, out)
                    nursery.start_soon(drain, process.stderr, err)
                assert await process.wait() == 130
                body += b"".join(out)
                errors = b"".join(err)
            finally:
                if process.returncode is None:
                    process.kill()
                    await process.wait()
    assert errors.decode().splitlines() == [
        f"h3-get: interrupted: download incomplete: {len(body)} of {size} bytes received"
    ]


# -- units --------------------------------------------------------------------------


def test_format_size() -> None:
    assert format_size(0) == "0 B"
    assert format_size(1023) == "1023 B"
    assert format_size(1536) == "1.5 KiB"
    assert format_size(3 * 1024 * 1024) == "3.0 MiB"
    assert format_size(5 * 1024**4) == "5.0 TiB"
    assert format_size(5 * 1024**5) == "5120.0 TiB"


def test_format_progress() -> None:
    mib = 1024 * 1024
    line = format_progress(mib, 4 * mib, 2.0, width=100)
    assert line == f" 25.0% [{'#' * 10}{'.' * 30}] 1.0 MiB / 4.0 MiB  512.0 KiB/s"
    assert len(format_progress(mib, 4 * mib, 2.0, width=80)) < 80  # fits the terminal
    assert format_progress(4 * mib, 4 * mib, 1.0).startswith("100.0% [" + "#" * 40 + "]")
    assert format_progress(5 * mib, 4 * mib, 1.0).startswith("100.0%")  # never over 100
    assert format_progress(0, 0, 0.0).startswith("100.0%")
    assert format_progress(10, 100, 0.0).endswith("--/s")
    narrow = format_progress(mib, 4 * mib, 2.0, width=40)
    assert narrow == f" 25.0% [##{'.' * 8}] 1.0 MiB / 4.0 MiB  512.0 KiB/s"  # 10 at least
    assert format_progress(3 * mib, None, 2.0) == "3.0 MiB  1.5 MiB/s"


def fake_clock(times: list[float]) -> Callable[[], float]:
    return lambda: times[0]


def test_progress_is_throttled_and_finishes_the_line() -> None:
    now = [0.0]
    stream = FakeTTY()
    progress = Progress(stream, 4 << 20, enabled=True, clock=fake_clock(now))
    progress.update(1 << 20)
    assert stream.getvalue().count("\r") == 1
    now[0] = 0.05
    progress.update(1 << 20)  # too soon to redraw
    assert stream.getvalue().count("\r") == 1
    now[0] = 0.5
    progress.update(2 << 20)
    assert stream.getvalue().count("\r") == 2
    progress.finish()
    final = stream.getvalue().split("\r")[-1]
    assert final.startswith("100.0% [") and final.endswith("\n")
    assert "4.0 MiB / 4.0 MiB  8.0 MiB/s" in final


def test_progress_of_unknown_size_waits_for_enough_bytes() -> None:
    now = [1.0]
    stream = FakeTTY()
    progress = Progress(stream, None, enabled=True, clock=fake_clock(now))
    progress.update(1000)
    assert stream.getvalue() == ""
    now[0] = 2.0
    progress.update(2 << 20)
    assert stream.getvalue().startswith("\r2.0 MiB")
    progress.finish()
    assert stream.getvalue().endswith(" MiB/s\n")


def test_progress_disabled_or_small_draws_nothing() -> None:
    for progress in (
        Progress(FakeTTY(), 10 << 20, enabled=False),
        Progress(FakeTTY(), 1000, enabled=True),  # small: not worth a bar
    ):
        progress.update(10 << 20)
        progress.finish()
        assert isinstance(progress.stream, io.StringIO) and progress.stream.getvalue() == ""


def test_content_types() -> None:
    assert content_type("a.html") == "text/html; charset=utf-8"
    assert content_type("a.txt") == "text/plain; charset=utf-8"
    assert content_type("a.png") == "image/png"
    assert content_type("a.tar.gz") == "application/gzip"
    assert content_type("noext") == "application/octet-stream"


def test_names_and_url_hosts() -> None:
    assert certificate_names("127.0.0.1") == ["localhost", "127.0.0.1", "::1"]
    assert certificate_names("0.0.0.0") == ["localhost", "127.0.0.1", "::1"]
    assert certificate_names("example.test") == ["localhost", "127.0.0.1", "::1", "example.test"]
    assert url_host("0.0.0.0") == "127.0.0.1"
    assert url_host("::") == "[::1]"
    assert url_host("::1") == "[::1]"
    assert url_host("example.test") == "example.test"


# -- the real command line ------------------------------------------------------------


async def test_subprocess_h3_get(tree: Tree, tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    async with serving(tree.root) as served:
        command = [sys.executable, "-m", "ghostwire", "h3-get", "--cafile", served.cafile]
        with trio.fail_after(TIME_LIMIT):
            ok = await trio.run_process(
                [*command, "-o", str(target), served.url + "large.bin"],
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )
            missing = await trio.run_process(
                [*command, served.url + "missing"],
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout == b"" and ok.stderr == b""
    assert sha256(target.read_bytes()) == sha256(tree.large)
    assert missing.returncode == 1
    assert missing.stdout == b"404 Not Found\n"
    assert missing.stderr.decode().splitlines() == [
        f"h3-get: HTTP/3 404 Not Found ({served.url}missing)"
    ]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
async def test_subprocess_h3_serve_stops_cleanly_on_ctrl_c(tree: Tree) -> None:
    with trio.fail_after(TIME_LIMIT):
        process = await trio.lowlevel.open_process(
            [
                sys.executable,
                "-m",
                "ghostwire",
                "h3-serve",
                "--root",
                str(tree.root),
                "--port",
                "0",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            assert process.stdout is not None and process.stderr is not None
            banner = b""
            while b"Press Ctrl-C to stop." not in banner:
                chunk = await process.stdout.receive_some()
                assert chunk, banner
                banner += chunk
            text = banner.decode()
            url = re.search(r"at (https://\S+)", text)
            cafile = re.search(r"--cafile (\S+) ", text)
            assert url and cafile
            result = await get("--cafile", cafile[1], url[1] + "small.txt")
            assert result.code == 0 and result.stdout == b"hello, HTTP/3\n"
            process.send_signal(signal.SIGINT)
            assert await process.wait() == 0
            errors = b""
            while chunk := await process.stderr.receive_some():
                errors += chunk
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    log = errors.decode()
    assert "Traceback" not in log
    assert "GET /small.txt 200 14" in log
    # The request's log line may come after the shutdown's first line: the
    # reply reached the client before the server finished the request.
    assert "Shutting down (up to 5 s for requests in progress)...\n" in log
    assert log.endswith("Stopped.\n")
    assert not await trio.Path(cafile[1]).exists()  # the temporary certificate is removed
