"""The shim's API without a network: config names, routing, middleware, request/response."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio

from ghostwire.errors import GhostwireError
from ghostwire.shroud import (
    ConfigError,
    Cookie,
    GrpcConfig,
    HttpError,
    SameSite,
    ServerProtocol,
    UnifiedRequest,
    UnifiedResponse,
    UnifiedServer,
    UnifiedServerConfig,
    capabilities,
    createGrpcServer,
    createUnifiedServer,
    version,
)
from ghostwire.shroud.chain import NextCalledTwice
from ghostwire.shroud.routing import Pattern


def request(method: str, target: str, body: bytes = b"", **headers: str) -> UnifiedRequest:
    fields = [(k.replace("_", "-"), v) for k, v in headers.items()]
    return UnifiedRequest.from_target(method, target, ServerProtocol.http1_1, fields, body)


async def respond(server: UnifiedServer, method: str, target: str, **kw: Any) -> UnifiedResponse:
    return await server.respond(request(method, target, **kw))


def plain_server(**options: Any) -> UnifiedServer:
    options.setdefault("enable_security_headers", False)
    return UnifiedServer(UnifiedServerConfig(**options))


# -- config ---------------------------------------------------------------------------------


def test_config_code_defaults() -> None:
    cfg = UnifiedServerConfig()
    assert (cfg.address, cfg.port, cfg.tls_port) == ("0.0.0.0", 8080, 8443)
    assert cfg.max_connections == 1000 and cfg.request_timeout_ms == 30000
    assert cfg.keep_alive_timeout_ms == 60000 and cfg.max_request_body_size == 1 << 20
    assert cfg.enable_http1 and cfg.enable_http2 and not cfg.enable_http3
    assert cfg.enable_websocket and not cfg.enable_tls and cfg.enable_security_headers
    assert cfg.cert_file is None and cfg.grpc_port == 50051


def test_config_documented_aliases_map_onto_code_fields() -> None:
    cfg = UnifiedServerConfig(
        http1_port=9000, bind_address="127.0.0.1", http2_port=9443, cert_path="c.pem",
        key_path="k.pem", http3_port=9444, grpc_port=9090, websocket_port=8765,
    )  # fmt: skip
    assert (cfg.port, cfg.address, cfg.tls_port) == (9000, "127.0.0.1", 9443)
    assert (cfg.cert_file, cfg.key_file) == ("c.pem", "k.pem")
    assert cfg.http1_port == 9000 and cfg.bind_address == "127.0.0.1" and cfg.cert_path == "c.pem"
    cfg.http1_port = 9001
    assert cfg.port == 9001
    assert cfg.effective_http3_port == 9444
    assert UnifiedServerConfig(tls_port=1234).effective_http3_port == 1234


@pytest.mark.parametrize(
    "options",
    [
        {"port": 1, "http1_port": 2},  # one setting, two values
        {"port": 70000},
        {"max_connections": 0},
        {"enable_tls": True},  # no certificate
        {"enable_http3": True},
        {"no_such_option": 1},
    ],
)
def test_config_errors(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigError) as info:
        UnifiedServerConfig(**options)
    assert isinstance(info.value, GhostwireError)


def test_version_capabilities_and_factories() -> None:
    assert version() == "1.0.0"
    caps = capabilities()
    assert caps.http3 and caps.http1_1 and caps.websocket
    assert caps.grpc and not caps.http2 and not caps.reverse_proxy
    server = createUnifiedServer(object(), UnifiedServerConfig(port=0))  # allocator ignored
    assert server.config.port == 0
    assert createUnifiedServer(UnifiedServerConfig(port=1)).config.port == 1
    assert UnifiedServer.init(None, UnifiedServerConfig()).config.port == 8080
    assert createGrpcServer(None, GrpcConfig(port=1)).config.port == 1  # allocator ignored


# -- routing --------------------------------------------------------------------------------


def test_patterns() -> None:
    assert Pattern.compile("/users/:id").match(["users", "7"]) == {"id": "7"}
    assert Pattern.compile("/users/:id").match(["users"]) is None
    assert Pattern.compile("/users/:id").match(["users", "7", "x"]) is None
    assert Pattern.compile("/files/*").match(["files", "a", "b.txt"]) == {"*": "a/b.txt"}
    assert Pattern.compile("//a//b/").match(["a", "b"]) == {}
    with pytest.raises(ConfigError):
        Pattern.compile("/a/*/b")
    with pytest.raises(ConfigError):
        Pattern.compile("no-slash")


async def test_routes_params_queries_and_not_found() -> None:
    server = plain_server()
    seen: dict[str, Any] = {}

    def user(req: UnifiedRequest, res: UnifiedResponse) -> None:
        seen.update(id=req.getParam("id"), tags=req.getQueryAll("tag"), q=req.getQuery("q"))
        res.jsonObject({"id": req.getParam("id"), "path": req.path})

    server.get("/users/:id", user)
    res = await respond(server, "GET", "/users/a%2Fb?q=hello%20world&tag=x&tag=y")
    assert res.status == 200
    assert res.getHeader("content-type") == "application/json; charset=utf-8"
    assert json.loads(res.body) == {"id": "a/b", "path": "/users/a/b"}
    assert seen == {"id": "a/b", "tags": ["x", "y"], "q": "hello world"}

    res = await respond(server, "GET", "/nothing")
    assert (res.status, res.body) == (404, b"404 - Not Found")
    assert res.getHeader("Content-Type") == "text/plain; charset=utf-8"
    res = await respond(server, "POST", "/users/1")
    assert res.status == 405 and res.getHeader("allow") == "GET"
    res = await respond(server, "HEAD", "/users/1")  # HEAD uses the GET route
    assert res.status == 200


async def test_add_handler_answers_every_method() -> None:
    server = plain_server()
    server.addHandler("/rpc", lambda req, res: res.text(f"{req.method} {req.body.decode()}"))
    for method in ("GET", "POST", "DELETE"):
        res = await respond(server, method, "/rpc", body=b"x")
        assert res.body == f"{method} x".encode()


# -- middleware -----------------------------------------------------------------------------


async def test_middleware_both_next_forms_plain_and_async() -> None:
    server = plain_server()
    order: list[str] = []

    def code_form(req: UnifiedRequest, res: UnifiedResponse, next: Any) -> None:
        order.append("code>")
        next()
        order.append(f"code<{res.status}")
        res.setHeader("X-Code", "1")

    async def doc_form(req: UnifiedRequest, res: UnifiedResponse, next: Any) -> None:
        order.append("doc>")
        await next(req, res)
        order.append(f"doc<{res.status}")

    def plain_after_async(req: UnifiedRequest, res: UnifiedResponse, next: Any) -> None:
        order.append("plain>")
        next(req, res)  # the rest (an async handler) runs back on trio
        order.append("plain<")

    async def handler(req: UnifiedRequest, res: UnifiedResponse) -> None:
        await trio.lowlevel.checkpoint()
        order.append("handler")
        res.setStatus(201)
        res.text("made")

    for mw in (code_form, doc_form, plain_after_async):
        server.use(mw)
    server.post("/things", handler)
    res = await respond(server, "POST", "/things")
    assert (res.status, res.body, res.getHeader("x-code")) == (201, b"made", "1")
    assert order == ["code>", "doc>", "plain>", "handler", "plain<", "doc<201", "code<201"]


async def test_all_plain_chain_runs_inline_on_the_trio_thread() -> None:
    server = plain_server()
    threads: list[int] = []

    def mw(req: UnifiedRequest, res: UnifiedResponse, next: Any) -> None:
        threads.append(threading.get_ident())
        next()

    def handler(req: UnifiedRequest, res: UnifiedResponse) -> None:
        threads.append(threading.get_ident())
        res.text("ok")

    server.addMiddleware(mw)
    server.get("/", handler)
    assert (await respond(server, "GET", "/")).body == b"ok"
    assert threads == [threading.get_ident()] * 2


async def test_middleware_short_circuits_and_next_twice_is_an_error() -> None:
    server = plain_server()
    hits: list[str] = []

    async def auth(req: UnifiedRequest, res: UnifiedResponse, next: Any) -> None:
        if req.getHeader("authorization") != "Bearer ok":
            res.setStatus(401)
            res.text("no")
            return
        await next()

    server.use(auth)
    server.get("/secret", lambda req, res: hits.append("handler"))
    assert (await respond(server, "GET", "/secret")).status == 401
    assert hits == []
    ok = await respond(server, "GET", "/secret", authorization="Bearer ok")
    assert ok.status == 200 and hits == ["handler"]

    twice = plain_server()

    async def greedy(req: UnifiedRequest, res: UnifiedResponse, next: Any) -> None:
        await next()
        await next()

    twice.use(greedy)
    twice.get("/", lambda req, res: None)
    assert (await respond(twice, "GET", "/")).status == 500
    with pytest.raises(NextCalledTwice):
        await twice.handleRequest(request("GET", "/"), UnifiedResponse())


async def test_errors_become_responses() -> None:
    server = plain_server()

    def teapot(req: UnifiedRequest, res: UnifiedResponse) -> None:
        raise HttpError(418, "short and stout")

    def broken(req: UnifiedRequest, res: UnifiedResponse) -> None:
        raise RuntimeError("bug")

    @dataclass
    class Item:
        name: str
        price: int

    def make(req: UnifiedRequest, res: UnifiedResponse) -> None:
        assert req.isJson()
        item = req.parseJson(Item)
        res.jsonObject(item)

    server.get("/teapot", teapot)
    server.get("/broken", broken)
    server.post("/items", make)
    assert (await respond(server, "GET", "/teapot")).body == b"short and stout"
    res = await respond(server, "GET", "/broken")
    assert (res.status, res.body) == (500, b"Internal Server Error")
    good = await respond(
        server, "POST", "/items", body=b'{"name":"a","price":2}', content_type="application/json"
    )
    assert json.loads(good.body) == {"name": "a", "price": 2}
    for body in (b"{", b'{"name":"a"}', b"[1]"):
        bad = await respond(server, "POST", "/items", body=body, content_type="application/json")
        assert bad.status == 400


async def test_builtin_middlewares() -> None:
    server = plain_server(enable_cors=True, enable_security_headers=True)
    server.use(server.compressionMiddleware())
    server.use(server.loggingMiddleware())
    server.get("/big", lambda req, res: res.text("x" * 5000))
    preflight = await respond(server, "OPTIONS", "/big")
    assert preflight.status == 204
    assert preflight.getHeader("access-control-allow-origin") == "*"
    big = await respond(server, "GET", "/big", accept_encoding="gzip")
    assert big.getHeader("content-encoding") == "gzip" and len(big.body) < 5000
    assert big.getHeader("x-content-type-options") == "nosniff"


# -- request and response -------------------------------------------------------------------


def test_request_fields() -> None:
    req = UnifiedRequest.from_target(
        "post", "/a?x=1", ServerProtocol.http3, [("Content-Type", "Application/JSON")], b"{}",
        ("::1", 5000),
    )  # fmt: skip
    assert req.method == "POST" and req.method.toString() == "POST"
    assert req.getHeader("content-type") == req.getHeader("CONTENT-TYPE")  # case-insensitive
    assert req.isJson() and req.hasHeader("Content-Type")
    assert req.protocol.value == "http3" and req.remote_addr == "[::1]:5000"
    assert req.body == b"{}" and req.path == "/a" and req.query_string == "x=1"
    with pytest.raises(HttpError):
        UnifiedRequest.from_target("BREW", "/")


def test_response_helpers(tmp_path: Path) -> None:
    res = UnifiedResponse()
    assert res.status == 200 and res.body == b""
    res.write("a")
    res.writeFormat("{}-{}", 1, 2)
    assert res.body == b"a1-2"
    res.html("<p>")
    assert res.body == b"<p>" and res.getHeader("content-type") == "text/html; charset=utf-8"
    res.json('{"a":1}')
    assert res.getHeader("content-type") == "application/json; charset=utf-8"
    res.setBody(b"raw")
    assert res.body == b"raw"
    res.redirect("/elsewhere", True)
    assert res.status == 301 and res.getHeader("location") == "/elsewhere"
    res.redirect("/temp")
    assert res.status == 302
    res.setCookie(Cookie("sid", "abc", path="/", max_age=60, secure=True, http_only=True,
                         same_site=SameSite.lax))  # fmt: skip
    res.set_cookie("theme", "dark")
    cookies = [v for n, v in res.wire_headers() if n == "Set-Cookie"]
    assert cookies == ["sid=abc; Path=/; Max-Age=60; Secure; HttpOnly; SameSite=Lax", "theme=dark"]
    page = tmp_path / "logo.svg"
    page.write_text("<svg/>")
    res.file(page)
    assert res.body == b"<svg/>" and res.getHeader("content-type") == "image/svg+xml"
    (tmp_path / "data.bin").write_bytes(b"\0")
    res.file(tmp_path / "data.bin")
    assert res.getHeader("content-type") == "application/octet-stream"
    with pytest.raises(HttpError) as missing:
        res.file(tmp_path / "nope.html")
    assert missing.value.status == 404
    with pytest.raises(ValueError):
        res.setHeader("X-Bad", "a\r\nb")


async def test_static_files_stay_inside_their_root(tmp_path: Path) -> None:
    root = tmp_path / "public"
    root.mkdir()
    (root / "index.html").write_text("home")
    (tmp_path / "secret.txt").write_text("secret")
    server = plain_server(static_files_root=str(root))
    assert (await respond(server, "GET", "/")).body == b"home"
    assert (await respond(server, "GET", "/index.html")).body == b"home"
    assert (await respond(server, "GET", "/%2E%2E/secret.txt")).status == 404
    assert (await respond(server, "GET", "/../secret.txt")).status == 404


def test_snake_case_aliases_exist() -> None:
    for name in ("get_header", "get_query", "get_param", "is_json", "parse_json"):
        assert callable(getattr(UnifiedRequest, name))
    for name in ("set_status", "set_header", "set_cookie", "json_object", "set_body"):
        assert callable(getattr(UnifiedResponse, name))
    for name in ("add_handler", "add_middleware", "handle_request", "get_stats"):
        assert callable(getattr(UnifiedServer, name))


# -- the AsyncUnifiedServer names -----------------------------------------------------------


async def test_async_server_names_map_onto_the_same_server() -> None:
    from ghostwire.shroud import (
        AsyncHttpResponse,
        AsyncMiddlewares,
        AsyncProtocol,
        AsyncUnifiedServer,
        AsyncUnifiedServerConfig,
        createAsyncServerBuilder,
        createAsyncUnifiedServer,
    )

    defaults = AsyncUnifiedServerConfig()
    assert (defaults.http_port, defaults.quic_port, defaults.grpc_port) == (8080, 8443, 9090)
    assert defaults.websocket_port == 8081 and defaults.max_request_size == 10 << 20
    with pytest.raises(ConfigError, match="tls_cert_path"):
        AsyncUnifiedServer(defaults)  # TLS and HTTP/3 on by default, with no certificate
    plain = AsyncUnifiedServerConfig(
        http_port=0, enable_tls=False, enable_http3=False, max_request_size=10
    )
    server = createAsyncUnifiedServer(None, object(), plain)  # (alloc, runtime, config)
    assert server.config.port == 0 and server.config.max_request_body_size == 10

    def handler(req: UnifiedRequest, res: AsyncHttpResponse) -> None:
        res.setStatus(202, "Accepted")
        res.setContentType("application/json")
        res.write(json.dumps({"ws": req.isWebSocketUpgrade(), "grpc": req.isGrpcRequest()}))

    server.addRoute("PUT", "/a", handler)
    server.use(AsyncMiddlewares.cors)
    res = await respond(server, "PUT", "/a", content_type="application/grpc+proto")
    assert res.status_code == 202 and json.loads(res.body) == {"ws": False, "grpc": True}
    assert res.getHeader("access-control-allow-origin") == "*"
    stats = server.getStats()
    assert (stats.routes_registered, stats.middlewares_registered) == (1, 1)

    built = (
        createAsyncServerBuilder(None, None)
        .bindAddress("127.0.0.1")
        .port(0)
        .maxConnections(5)
        .enableProtocol(AsyncProtocol.http3, False)
        .enableProtocol(AsyncProtocol.http2, False)
        .tls("cert.pem", "key.pem")
    )
    assert built.config.enable_http3 is False and built.config.max_connections == 5
    assert built.config.bind_address == "127.0.0.1"
