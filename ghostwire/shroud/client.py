"""``HttpClient``: the original's client API, over HTTP/1.1 (h11; TLS for https) or HTTP/3.

Under trio the methods are awaited (``await client.get(url)``); a script
without trio uses :class:`BlockingHttpClient`, same methods, each call
blocking. Both the code's and the documented call forms work:
``post(url, body)``, ``post(url, body, "application/json")``,
``request(method, url, headers, body)``.

Unlike the original, ``https`` works (with certificate verification unless
``verify_tls=False``; ``ca_file`` names a private CA), redirects are followed
up to ``max_redirects``, and ``preferred_protocol=HttpVersion.http3`` sends
the request over HTTP/3. Each request uses its own connection.
"""

from __future__ import annotations

import gzip
import json
import ssl
from dataclasses import dataclass, field
from enum import Enum
from typing import Any
from urllib.parse import urljoin, urlsplit

import trio

from .errors import ClientError, ConnectionFailed, InvalidJson, NetworkError
from .message import Headers

RECEIVE_SIZE = 65536
REDIRECTS = (301, 302, 303, 307, 308)


class HttpVersion(Enum):
    auto = "auto"
    http1_1 = "http1_1"
    http2 = "http2"
    http3 = "http3"


@dataclass
class ClientConfig:
    """The original's ``ClientConfig`` (the documented ``HttpClient.Config``), plus
    ``ca_file`` and ``max_response_size``."""

    timeout_ms: int = 30000
    max_redirects: int = 5
    user_agent: str = "Shroud-HTTP-Client/1.0"
    enable_compression: bool = True
    enable_keep_alive: bool = True
    verify_tls: bool = True
    preferred_protocol: HttpVersion = HttpVersion.auto
    ca_file: str | None = None
    max_response_size: int = 64 << 20


@dataclass
class ClientResponse:
    """``ClientResponse`` (documented as ``HttpResponse{status, headers, body}``)."""

    status: int
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""
    url: str = ""

    def getHeader(self, name: str) -> str | None:
        return self.headers.get(name)

    def isSuccess(self) -> bool:
        return 200 <= self.status < 300

    def isRedirect(self) -> bool:
        return 300 <= self.status < 400

    def isError(self) -> bool:
        return self.status >= 400

    def parseJson(self) -> Any:
        try:
            return json.loads(self.body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InvalidJson(f"response body is not JSON: {exc}") from None

    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def deinit(self, _allocator: Any = None) -> None:
        """Nothing to free in Python."""

    get_header = getHeader
    is_success = isSuccess
    is_redirect = isRedirect
    is_error = isError
    parse_json = parseJson


HttpResponse = ClientResponse


@dataclass
class ClientRequest:
    method: str
    url: str
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""

    @classmethod
    def init(cls, _allocator: Any, method: str, url: str) -> ClientRequest:
        return cls(str(method).upper(), url)

    def setHeader(self, name: str, value: str) -> None:
        self.headers.set(name, value)

    def setBody(self, body: bytes | str) -> None:
        self.body = body.encode() if isinstance(body, str) else bytes(body)

    def json(self, value: Any) -> None:
        self.setHeader("Content-Type", "application/json")
        self.setBody(json.dumps(value, separators=(",", ":")))

    def form(self, fields: dict[str, str]) -> None:
        from urllib.parse import urlencode

        self.setHeader("Content-Type", "application/x-www-form-urlencoded")
        self.setBody(urlencode(fields))

    set_header = setHeader
    set_body = setBody


class HttpClient:
    """An async HTTP client with the original's method names; see the module docs."""

    Config = ClientConfig

    def __init__(self, config: ClientConfig | None = None, **options: Any) -> None:
        self.config = config if config is not None else ClientConfig(**options)

    @classmethod
    def init(cls, _allocator: Any, config: ClientConfig | None = None) -> HttpClient:
        return cls(config)

    def deinit(self) -> None:
        """Nothing to release: each request closes its connection."""

    async def get(self, url: str, headers: dict[str, str] | None = None) -> ClientResponse:
        return await self.request("GET", url, headers)

    async def post(
        self, url: str, body: bytes | str = b"", content_type: str | None = None
    ) -> ClientResponse:
        return await self.request("POST", url, _content_type(content_type), body)

    async def put(
        self, url: str, body: bytes | str = b"", content_type: str | None = None
    ) -> ClientResponse:
        return await self.request("PUT", url, _content_type(content_type), body)

    async def delete(self, url: str) -> ClientResponse:
        return await self.request("DELETE", url)

    async def execute(self, request: ClientRequest) -> ClientResponse:
        return await self.request(
            request.method, request.url, dict(request.headers.items()), request.body
        )

    async def request(
        self,
        method: str,
        url: str,
        headers: dict[str, str] | None = None,
        body: bytes | str | None = None,
    ) -> ClientResponse:
        """Send a request, following redirects; raises a TransportError subclass on failure."""
        data = body.encode() if isinstance(body, str) else bytes(body or b"")
        method = str(method).upper()
        with trio.move_on_after(self.config.timeout_ms / 1000) as scope:
            for _ in range(self.config.max_redirects + 1):
                response = await self._once(method, url, dict(headers or {}), data)
                location = response.getHeader("location")
                if response.status not in REDIRECTS or location is None:
                    return response
                url = urljoin(url, location)
                if response.status == 303 or (response.status in (301, 302) and method == "POST"):
                    method, data = "GET", b""
            raise ClientError(f"more than {self.config.max_redirects} redirects")
        assert scope.cancelled_caught
        raise NetworkError(f"{method} {url} timed out after {self.config.timeout_ms} ms")

    async def _once(
        self, method: str, url: str, headers: dict[str, str], body: bytes
    ) -> ClientResponse:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ClientError(f"not an http(s) URL: {url!r}")
        fields = Headers([("User-Agent", self.config.user_agent)])
        if self.config.enable_compression:
            fields.set("Accept-Encoding", "gzip")
        for name, value in headers.items():
            fields.set(name, value)
        if self.config.preferred_protocol is HttpVersion.http3:
            if parts.scheme != "https":
                raise ClientError("HTTP/3 needs an https URL")
            response = await self._http3(method, url, fields, body)
        else:
            from .client_h1 import request_h1

            context = self._ssl_context() if parts.scheme == "https" else None
            response = await request_h1(method, parts, fields, body, context, self.config)
        response.url = url
        if response.getHeader("content-encoding") == "gzip":
            response.body = gzip.decompress(response.body)
        return response

    async def _http3(self, method: str, url: str, fields: Headers, body: bytes) -> ClientResponse:
        from ..errors import GhostwireError
        from ..http3 import Client, HttpError

        try:
            async with Client(
                cafile=self.config.ca_file,
                verify=self.config.verify_tls,
                timeout=self.config.timeout_ms / 1000,
            ) as client:
                reply = await client.request(method, url, headers=fields.items(), content=body)
                data = await reply.read()
        except (GhostwireError, HttpError) as exc:
            raise ConnectionFailed(f"HTTP/3 request to {url} failed: {exc}") from exc
        except OSError as exc:
            raise ConnectionFailed(f"cannot reach {url}: {exc}") from exc
        return ClientResponse(reply.status, Headers(reply.headers), data)

    def _ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.config.ca_file)
        if not self.config.verify_tls:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        context.set_alpn_protocols(["http/1.1"])
        return context


def _content_type(content_type: str | None) -> dict[str, str] | None:
    return {"Content-Type": content_type} if content_type else None


class BlockingHttpClient:
    """:class:`HttpClient` for code without trio: each call runs to completion."""

    Config = ClientConfig

    def __init__(self, config: ClientConfig | None = None, **options: Any) -> None:
        self._client = HttpClient(config, **options)
        self.config = self._client.config

    def get(self, url: str, headers: dict[str, str] | None = None) -> ClientResponse:
        return trio.run(self._client.get, url, headers)

    def post(
        self, url: str, body: bytes | str = b"", content_type: str | None = None
    ) -> ClientResponse:
        return trio.run(self._client.post, url, body, content_type)

    def put(
        self, url: str, body: bytes | str = b"", content_type: str | None = None
    ) -> ClientResponse:
        return trio.run(self._client.put, url, body, content_type)

    def delete(self, url: str) -> ClientResponse:
        return trio.run(self._client.delete, url)

    def execute(self, request: ClientRequest) -> ClientResponse:
        return trio.run(self._client.execute, request)

    def request(
        self,
        method: str,
        url: str,
        headers: dict[str, str] | None = None,
        body: bytes | str | None = None,
    ) -> ClientResponse:
        return trio.run(self._client.request, method, url, headers, body)


__all__ = [
    "BlockingHttpClient",
    "ClientConfig",
    "ClientRequest",
    "ClientResponse",
    "HttpClient",
    "HttpResponse",
    "HttpVersion",
]
