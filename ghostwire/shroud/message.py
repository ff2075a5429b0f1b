"""``UnifiedRequest`` / ``UnifiedResponse``: the original's names, working semantics.

Both keep the Zig camelCase methods (``getHeader``, ``setStatus``,
``jsonObject``, ...) with snake_case aliases. Differences from the original
(each listed in docs/migrating-from-shroud.md): header names are
case-insensitive, ``path`` has no query string (it is parsed into
``query_params``), ``path_params`` are filled from ``:name`` route segments,
cookies are really sent (``Set-Cookie``), and the body helpers replace the
body rather than append to it (``write`` appends).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from typing import Any, TypeVar, overload
from urllib.parse import parse_qsl, unquote, urlsplit

from .config import NetworkProtocol, ServerProtocol
from .errors import HttpError, InvalidJson

T = TypeVar("T")

TEXT = "text/plain; charset=utf-8"
HTML = "text/html; charset=utf-8"
JSON = "application/json; charset=utf-8"

# UnifiedResponse.file(): the original's extension map, nothing more.
CONTENT_TYPES = {
    ".html": "text/html",
    ".css": "text/css",
    ".js": "application/javascript",
    ".json": "application/json",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".svg": "image/svg+xml",
    ".ico": "image/x-icon",
}
DEFAULT_CONTENT_TYPE = "application/octet-stream"


class Method(StrEnum):
    """``UnifiedRequest.Method``; compares equal to its name (``Method.GET == "GET"``)."""

    GET = "GET"
    POST = "POST"
    PUT = "PUT"
    DELETE = "DELETE"
    PATCH = "PATCH"
    HEAD = "HEAD"
    OPTIONS = "OPTIONS"
    TRACE = "TRACE"
    CONNECT = "CONNECT"

    def toString(self) -> str:
        return self.value

    to_string = toString

    @classmethod
    def fromString(cls, name: str) -> Method:
        try:
            return cls(name.upper())
        except ValueError:
            raise HttpError(405, f"Method {name!r} not supported") from None

    from_string = fromString


class Headers:
    """An ordered header list with case-insensitive lookup (``res.headers["X-A"]``)."""

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str]] = [(str(k), str(v)) for k, v in items]

    def get(self, name: str, default: str | None = None) -> str | None:
        lower = name.lower()
        for key, value in self._items:
            if key.lower() == lower:
                return value
        return default

    def get_all(self, name: str) -> list[str]:
        lower = name.lower()
        return [v for k, v in self._items if k.lower() == lower]

    def set(self, name: str, value: str) -> None:
        """Replace every field called ``name`` with one."""
        self.remove(name)
        self._items.append((name, str(value)))

    def add(self, name: str, value: str) -> None:
        self._items.append((name, str(value)))

    def remove(self, name: str) -> None:
        lower = name.lower()
        self._items = [(k, v) for k, v in self._items if k.lower() != lower]

    def items(self) -> list[tuple[str, str]]:
        return list(self._items)

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __setitem__(self, name: str, value: str) -> None:
        self.set(name, value)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __iter__(self) -> Iterator[str]:
        return iter(k for k, _ in self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


@dataclass
class UnifiedRequest:
    """A request as handlers and middleware see it (the whole body is read first)."""

    method: Method
    path: str
    version: ServerProtocol = ServerProtocol.http1_1
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""
    query_params: dict[str, str] = field(default_factory=dict)
    path_params: dict[str, str] = field(default_factory=dict)
    client_ip: str = ""
    raw_path: str = ""
    """The path as sent (percent-encoded); routing splits this one."""
    query_string: str = ""
    """The raw query string (what followed ``?``), for when the parsed form is not enough."""
    client_port: int = 0
    identity: Any = None
    """Documented ``identity`` (a RealID key in the original); not derived by the shim."""
    context: dict[str, Any] = field(default_factory=dict)
    """Free space for middleware to pass values to handlers."""
    _query_list: list[tuple[str, str]] = field(default_factory=list, repr=False)

    @classmethod
    def from_target(
        cls,
        method: str,
        target: str,
        version: ServerProtocol = ServerProtocol.http1_1,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        client: tuple[str, int] | None = None,
    ) -> UnifiedRequest:
        """Build a request from a request target (``/path?query``); the query is parsed."""
        parts = urlsplit(target)
        query = parse_qsl(parts.query, keep_blank_values=True)
        params: dict[str, str] = {}
        for key, value in query:
            params.setdefault(key, value)  # the first value wins; getQueryAll has them all
        return cls(
            method=Method.fromString(method),
            path=unquote(parts.path) or "/",
            raw_path=parts.path or "/",
            version=version,
            headers=Headers(headers),
            body=body,
            query_params=params,
            client_ip=client[0] if client else "",
            client_port=client[1] if client else 0,
            query_string=parts.query,
            _query_list=query,
        )

    @classmethod
    def init(cls, _allocator: Any, method: str, path: str, version: Any = None) -> UnifiedRequest:
        """The original's ``init(alloc, method, path, version)``; the allocator is ignored."""
        return cls.from_target(method, path, version or ServerProtocol.http1_1)

    def deinit(self) -> None:
        """Nothing to free in Python."""

    # -- documented field names ---------------------------------------------------------

    @property
    def remote_addr(self) -> str:
        return (
            f"[{self.client_ip}]:{self.client_port}"
            if ":" in self.client_ip
            else (f"{self.client_ip}:{self.client_port}")
        )

    @property
    def protocol(self) -> NetworkProtocol:
        return NetworkProtocol(self.version.value)

    # -- the original's methods ---------------------------------------------------------

    def getHeader(self, name: str) -> str | None:
        return self.headers.get(name)

    def hasHeader(self, name: str) -> bool:
        return name in self.headers

    def getQuery(self, name: str) -> str | None:
        return self.query_params.get(name)

    def getQueryAll(self, name: str) -> list[str]:
        """Every value of a repeated query parameter (``?tag=a&tag=b``)."""
        return [v for k, v in self._query_list if k == name]

    def getParam(self, name: str) -> str | None:
        return self.path_params.get(name)

    def isJson(self) -> bool:
        return "application/json" in (self.headers.get("content-type") or "").lower()

    @overload
    def parseJson(self) -> Any: ...
    @overload
    def parseJson(self, into: type[T]) -> T: ...
    def parseJson(self, into: type[Any] | None = None) -> Any:
        """The body as JSON; with ``into`` (a dataclass or any class taking keyword
        arguments), an instance built from the JSON object. Bad input: :class:`InvalidJson` (400).
        """
        try:
            value = json.loads(self.body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InvalidJson(f"request body is not JSON: {exc}") from None
        if into is None:
            return value
        if not isinstance(value, dict):
            raise InvalidJson(f"expected a JSON object for {into.__name__}")
        try:
            return into(**value)
        except TypeError as exc:
            raise InvalidJson(f"JSON does not fit {into.__name__}: {exc}") from None

    def isWebSocketUpgrade(self) -> bool:
        upgrade = (self.headers.get("upgrade") or "").lower()
        return (
            upgrade == "websocket" and "upgrade" in (self.headers.get("connection") or "").lower()
        )

    def isGrpcRequest(self) -> bool:
        return (self.headers.get("content-type") or "").lower().startswith("application/grpc")

    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    is_websocket_upgrade = isWebSocketUpgrade
    is_grpc_request = isGrpcRequest
    get_header = getHeader
    has_header = hasHeader
    get_query = getQuery
    get_query_all = getQueryAll
    get_param = getParam
    is_json = isJson
    parse_json = parseJson


class SameSite(Enum):
    strict = "Strict"
    lax = "Lax"
    none = "None"


@dataclass
class Cookie:
    """The original's ``Cookie``; the shim really sends it as ``Set-Cookie``."""

    name: str
    value: str
    domain: str | None = None
    path: str | None = None
    max_age: int | None = None
    secure: bool = False
    http_only: bool = False
    same_site: SameSite | None = None

    def header_value(self) -> str:
        for part in (self.name, self.value, self.domain or "", self.path or ""):
            if any(c in part for c in ";\r\n"):
                raise HttpError(500, "cookie fields must not contain ';' or line breaks")
        parts = [f"{self.name}={self.value}"]
        if self.domain:
            parts.append(f"Domain={self.domain}")
        if self.path:
            parts.append(f"Path={self.path}")
        if self.max_age is not None:
            parts.append(f"Max-Age={self.max_age}")
        if self.secure:
            parts.append("Secure")
        if self.http_only:
            parts.append("HttpOnly")
        if self.same_site is not None:
            parts.append(f"SameSite={self.same_site.value}")
        return "; ".join(parts)


class UnifiedResponse:
    """A response being built by middleware and a handler."""

    def __init__(self, _allocator: Any = None) -> None:
        self.status = 200
        self.headers = Headers()
        self._body = bytearray()
        self.cookies: list[Cookie] = []
        self.is_sent = False

    @classmethod
    def init(cls, _allocator: Any = None) -> UnifiedResponse:
        return cls()

    def deinit(self) -> None:
        """Nothing to free in Python."""

    @property
    def body(self) -> bytes:
        return bytes(self._body)

    @body.setter
    def body(self, value: bytes | str) -> None:
        self._body = bytearray(value.encode() if isinstance(value, str) else value)

    def setStatus(self, status: int, text: str | None = None) -> None:
        """Set the status; ``text`` (AsyncHttpResponse's reason phrase) is accepted and unused:
        HTTP/3 has no reason phrase and HTTP/1.1 sends the standard one."""
        if not 100 <= int(status) <= 999:
            raise ValueError(f"not an HTTP status code: {status!r}")
        self.status = int(status)

    @property
    def status_code(self) -> int:
        """AsyncHttpResponse's name for :attr:`status`."""
        return self.status

    @status_code.setter
    def status_code(self, value: int) -> None:
        self.setStatus(value)

    def setContentType(self, content_type: str) -> None:
        self.setHeader("Content-Type", content_type)

    def setHeader(self, name: str, value: str) -> None:
        if any(c in f"{name}{value}" for c in "\r\n\0"):
            raise ValueError("header names and values must not contain CR, LF or NUL")
        self.headers.set(name, str(value))

    def getHeader(self, name: str) -> str | None:
        return self.headers.get(name)

    def setCookie(self, cookie: Cookie | str, value: str | None = None, **attributes: Any) -> None:
        """``setCookie(Cookie(...))`` (the original) or ``setCookie(name, value, path=...)``."""
        if isinstance(cookie, str):
            cookie = Cookie(cookie, value or "", **attributes)
        self.cookies.append(cookie)

    def write(self, data: bytes | str) -> None:
        """Append to the body."""
        self._body += data.encode() if isinstance(data, str) else data

    def writeFormat(self, fmt: str, *args: Any) -> None:
        """Append ``fmt.format(*args)`` (Zig's ``{}`` placeholders read the same)."""
        self.write(fmt.format(*args))

    def setBody(self, data: bytes | str) -> None:
        """The documented ``setBody``: replace the body."""
        self.body = data

    def _replace(self, content_type: str, data: bytes | str) -> None:
        self.setHeader("Content-Type", content_type)
        self.body = data

    def text(self, data: str) -> None:
        self._replace(TEXT, data)

    def html(self, data: str) -> None:
        self._replace(HTML, data)

    def json(self, data: str | bytes) -> None:
        """Send ``data``, already JSON text (as in the original); see :meth:`jsonObject`."""
        self._replace(JSON, data)

    def jsonObject(self, value: Any) -> None:
        """Serialise ``value`` (dicts, lists, dataclasses, ...) as compact JSON."""
        self._replace(JSON, json.dumps(value, separators=(",", ":"), default=_json_default))

    def redirect(self, url: str, permanent: bool = False) -> None:
        self.setStatus(301 if permanent else 302)
        self.setHeader("Location", url)

    def file(self, path: str | os.PathLike[str]) -> None:
        """Send a file's bytes, Content-Type from its extension; a missing file is a 404."""
        try:
            with open(path, "rb") as f:
                data = f.read()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise HttpError(404, "404 - Not Found") from None
        extension = os.path.splitext(os.fspath(path))[1].lower()
        self._replace(CONTENT_TYPES.get(extension, DEFAULT_CONTENT_TYPE), data)

    def wire_headers(self) -> list[tuple[str, str]]:
        """The header fields to send: ours, then one ``Set-Cookie`` per cookie."""
        fields = self.headers.items()
        fields += [("Set-Cookie", c.header_value()) for c in self.cookies]
        return fields

    set_status = setStatus
    set_header = setHeader
    get_header = getHeader
    set_cookie = setCookie
    write_format = writeFormat
    set_body = setBody
    set_content_type = setContentType
    json_object = jsonObject


def _json_default(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


__all__ = [
    "CONTENT_TYPES",
    "Cookie",
    "Headers",
    "Method",
    "SameSite",
    "UnifiedRequest",
    "UnifiedResponse",
]
