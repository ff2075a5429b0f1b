"""The gRPC shim's value types, with GhostWire's names and defaults (pure: no I/O).

``GrpcStatus`` (codes 0-16 under the original's lowercase names, with
``toString()`` giving gRPC's UPPER_SNAKE names; the UPPER names work as
aliases), ``GrpcMessage`` (gRPC's ``[u8 compressed][u32 BE length][data]``
framing, RFC-less but as gRPC's PROTOCOL-HTTP2.md specifies it),
``GrpcMetadata``, ``GrpcRequest`` / ``GrpcResponse`` (what a handler gets),
``GrpcCall`` (what ``GrpcClient.call`` returns), and the configs
``GrpcConfig``, ``ClientConfig``, ``CallOptions`` and ``RetryPolicy`` with the
original's field names and defaults. :meth:`RetryPolicy.to_rpc` maps the
original's retry settings onto :class:`ghostwire.rpc.resilience.RetryPolicy`.
"""

from __future__ import annotations

import enum
import json
import struct
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..rpc.resilience.backoff import BackoffPolicy
from ..rpc.resilience.retry import RetryPolicy as RpcRetryPolicy
from ..rpc.status import Status
from .errors import ConfigError, GrpcError

DEFAULT_PORT = 9090  # the code's; the docs said 50051
MAX_RETRY_ATTEMPTS = 5  # ghostwire.rpc's cap (gRPC's A6 caps maxAttempts at 5)


class GrpcStatus(enum.IntEnum):
    """gRPC status codes 0-16 under the original's names (``GrpcStatus.ok``).

    ``toString()`` gives gRPC's names ("OK", "CANCELLED", ...); the UPPER_SNAKE
    spellings are aliases of the same members (``GrpcStatus.OK is GrpcStatus.ok``).
    """

    ok = 0
    cancelled = 1
    unknown = 2
    invalid_argument = 3
    deadline_exceeded = 4
    not_found = 5
    already_exists = 6
    permission_denied = 7
    resource_exhausted = 8
    failed_precondition = 9
    aborted = 10
    out_of_range = 11
    unimplemented = 12
    internal = 13
    unavailable = 14
    data_loss = 15
    unauthenticated = 16
    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16

    def toString(self) -> str:
        return self.name.upper()

    to_string = toString

    @classmethod
    def of(cls, value: object) -> GrpcStatus:
        """A status from a code, a name in either case, or a ghostwire.rpc status."""
        if isinstance(value, str):
            member = cls.__members__.get(value) or cls.__members__.get(value.lower())
            if member is None:
                raise ValueError(f"no gRPC status named {value!r}")
            return member
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 16:
            return cls(int(value))
        raise ValueError(f"not a gRPC status: {value!r}")

    def to_rpc(self) -> Status:
        return Status(int(self))


class GrpcCallFailed(GrpcError):
    """``unaryCall`` (or the documented ``call`` form) got a status other than OK."""

    def __init__(self, status: GrpcStatus, message: str = "") -> None:
        self.status = status
        self.message = message
        text = f"{status.toString()}: {message}" if message else status.toString()
        super().__init__(text)


class NoResponseData(GrpcError):
    """``unaryCall`` succeeded but the server sent no response message."""


class InvalidGrpcMessage(GrpcError):
    """A length-prefixed gRPC message that cannot be decoded."""


# -- GrpcMessage: gRPC's length-prefixed message ---------------------------------------------

_PREFIX = struct.Struct(">BI")  # compressed flag, big-endian length


@dataclass
class GrpcMessage:
    """One gRPC message, ``data`` with its compressed flag (and the documented ``metadata``)."""

    data: bytes = b""
    compressed: bool = False
    metadata: dict[str, str] = field(default_factory=dict)

    def encode(self) -> bytes:
        """``[u8 compressed][u32 BE length][data]`` (gRPC's Length-Prefixed-Message)."""
        return _PREFIX.pack(1 if self.compressed else 0, len(self.data)) + bytes(self.data)

    @classmethod
    def decode(cls, data: bytes | bytearray | memoryview) -> GrpcMessage:
        """The one message in ``data``; anything else is :class:`InvalidGrpcMessage`."""
        message, rest = cls.decode_prefix(data)
        if message is None or rest:
            raise InvalidGrpcMessage(
                "truncated gRPC message" if message is None else "data after the gRPC message"
            )
        return message

    @classmethod
    def decode_prefix(
        cls, data: bytes | bytearray | memoryview
    ) -> tuple[GrpcMessage | None, bytes]:
        """The first message in ``data`` and what follows it (None if incomplete)."""
        view = bytes(data)
        if len(view) < _PREFIX.size:
            return None, view
        flag, length = _PREFIX.unpack_from(view)
        if flag not in (0, 1):
            raise InvalidGrpcMessage(f"compressed flag must be 0 or 1, got {flag}")
        end = _PREFIX.size + length
        if len(view) < end:
            return None, view
        return cls(view[_PREFIX.size : end], bool(flag)), view[end:]


def decode_messages(data: bytes) -> Iterator[GrpcMessage]:
    """Every message in a buffer holding whole messages back to back."""
    rest = bytes(data)
    while rest:
        message, rest = GrpcMessage.decode_prefix(rest)
        if message is None:
            raise InvalidGrpcMessage("truncated gRPC message")
        yield message


# -- metadata, requests and responses --------------------------------------------------------


class GrpcMetadata:
    """Call metadata: ``set(key, value)`` / ``get(key)``; keys are case-insensitive."""

    def __init__(self, items: Mapping[str, str | bytes] | None = None) -> None:
        self._items: dict[str, str | bytes] = {}
        for key, value in (items or {}).items():
            self.set(key, value)

    def set(self, key: str, value: str | bytes) -> None:
        if not isinstance(key, str) or not key:
            raise GrpcError(f"metadata keys are non-empty strings, got {key!r}")
        self._items[key.lower()] = value

    def get(self, key: str) -> str | bytes | None:
        return self._items.get(key.lower())

    def remove(self, key: str) -> None:
        self._items.pop(key.lower(), None)

    def count(self) -> int:
        return len(self._items)

    def contains(self, key: str) -> bool:
        return key.lower() in self._items

    def items(self) -> Iterable[tuple[str, str | bytes]]:
        return self._items.items()

    def to_dict(self) -> dict[str, str | bytes]:
        return dict(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"GrpcMetadata({self._items!r})"


@dataclass
class GrpcRequest:
    """What a handler receives: ``message`` is the request bytes (None if none was sent)."""

    service: str
    method: str
    metadata: GrpcMetadata = field(default_factory=GrpcMetadata)
    message: bytes | None = None
    stream_id: int = 0
    peer: Any = None  # ghostwire's: the caller's address
    resume_after: Any = None  # ghostwire's: an event channel's resume cursor

    def getFullMethod(self) -> str:
        return f"/{self.service}/{self.method}"

    get_full_method = getFullMethod

    def json(self) -> Any:
        """The message parsed as JSON (what ``unaryCall`` sends)."""
        if self.message is None:
            raise GrpcCallFailed(GrpcStatus.invalid_argument, "No message provided")
        try:
            return json.loads(self.message)
        except ValueError as exc:
            raise GrpcCallFailed(GrpcStatus.invalid_argument, f"invalid JSON: {exc}") from None


@dataclass
class GrpcResponse:
    """What a handler fills in: ``setMessage``, ``setStatus``, ``setError(status, msg)``."""

    status: GrpcStatus = GrpcStatus.ok
    message: bytes | None = None
    metadata: GrpcMetadata = field(default_factory=GrpcMetadata)
    trailers: GrpcMetadata = field(default_factory=GrpcMetadata)

    def setMessage(self, data: bytes | str) -> None:
        self.message = data.encode() if isinstance(data, str) else bytes(data)

    def setStatus(self, status: GrpcStatus | int | str) -> None:
        self.status = GrpcStatus.of(status)

    def setError(self, status: GrpcStatus | int | str, message: str) -> None:
        self.status = GrpcStatus.of(status)
        self.trailers.set("grpc-message", message)

    def setJson(self, value: Any) -> None:
        """ghostwire's: the message as compact JSON (the original's "protobuf")."""
        self.message = json.dumps(value, separators=(",", ":")).encode()

    set_message = setMessage
    set_status = setStatus
    set_error = setError
    set_json = setJson


@dataclass
class GrpcCall:
    """One finished call, as ``GrpcClient.call(service, method, data, options)`` returns it."""

    service: str
    method: str
    request_data: bytes
    response_data: bytes | None = None
    metadata: GrpcMetadata = field(default_factory=GrpcMetadata)
    trailers: GrpcMetadata = field(default_factory=GrpcMetadata)
    status: GrpcStatus = GrpcStatus.unknown
    call_id: int = 0
    attempts: int = 0  # ghostwire's: how many attempts the retry policy made

    def isSuccess(self) -> bool:
        return self.status is GrpcStatus.ok

    is_success = isSuccess

    @property
    def error_message(self) -> str:
        value = self.trailers.get("grpc-message")
        return value.decode(errors="replace") if isinstance(value, bytes) else (value or "")


# -- configuration ---------------------------------------------------------------------------


class Transport(enum.Enum):
    """``GrpcConfig.transport``. Both values serve over QUIC here (see the migration doc)."""

    http2 = "http2"
    quic = "quic"


class ServiceType(enum.Enum):
    ghostd = "ghostd"
    walletd = "walletd"
    edge_node = "edge_node"
    other = "other"


class HealthStatus(enum.Enum):
    """``checkServiceHealth``'s answer (GhostWire's names)."""

    unknown = "unknown"
    healthy = "healthy"
    unhealthy = "unhealthy"
    maintenance = "maintenance"


@dataclass
class RegisteredService:
    """An entry of ``registerService(name, endpoint, service_type)``."""

    name: str
    endpoint: str
    service_type: ServiceType = ServiceType.other
    health_status: HealthStatus = HealthStatus.unknown


@dataclass
class ServerStats:
    """``GrpcServer.stats``, the original's fields.

    ``total_connections`` is the most connections seen open at once (the
    QUIC layer does not count closed ones); refresh with ``updateStats()``.
    """

    total_connections: int = 0
    active_connections: int = 0
    requests_handled: int = 0
    errors: int = 0


_CERT_ALIASES = {
    "cert_path": "cert_file",
    "key_path": "key_file",
    "tls_cert_path": "cert_file",
    "tls_key_path": "key_file",
}


@dataclass(init=False)
class GrpcConfig:
    """``GrpcConfig``: the code's fields and defaults, plus ``cert_file``/``key_file``.

    QUIC always runs TLS 1.3, so a server needs a certificate: ``cert_file``
    and ``key_file`` (also accepted as ``cert_path``/``key_path`` or
    ``tls_cert_path``/``tls_key_path``), PEM files.
    """

    address: str
    port: int
    max_connections: int
    max_message_size: int
    enable_reflection: bool
    enable_health_check: bool
    transport: Transport
    request_timeout_ms: int
    enable_discovery: bool
    enable_post_quantum: bool
    cert_file: str | None
    key_file: str | None

    _DEFAULTS = {
        "address": "0.0.0.0",
        "port": DEFAULT_PORT,
        "max_connections": 1000,
        "max_message_size": 4 << 20,
        "enable_reflection": True,
        "enable_health_check": True,
        "transport": Transport.http2,
        "request_timeout_ms": 30000,
        "enable_discovery": True,
        "enable_post_quantum": True,
        "cert_file": None,
        "key_file": None,
    }

    def __init__(self, **options: Any) -> None:
        values = dict(self._DEFAULTS)
        given: dict[str, Any] = {}
        for name, value in options.items():
            target = _CERT_ALIASES.get(name, name)
            if name == "bind_address":
                target = "address"
            if target not in values:
                raise ConfigError(f"GrpcConfig has no setting {name!r}")
            if target in given and given[target] != value:
                raise ConfigError(f"{name!r} contradicts another name of {target!r}")
            given[target] = value
        values.update(given)
        if isinstance(values["transport"], str):
            values["transport"] = Transport(values["transport"])
        for name, value in values.items():
            setattr(self, name, value)
        if not 0 <= int(self.port) <= 65535:
            raise ConfigError(f"port must be 0..65535, got {self.port!r}")
        if self.max_message_size < 1:
            raise ConfigError("max_message_size must be positive")


@dataclass
class RetryPolicy:
    """The original's ``RetryPolicy`` (its defaults: 3 attempts, 1000 ms, x1.5, max 30 s,
    on UNAVAILABLE and DEADLINE_EXCEEDED); see :meth:`to_rpc`."""

    max_attempts: int = 3
    initial_backoff_ms: int = 1000
    max_backoff_ms: int = 30000
    backoff_multiplier: float = 1.5
    retryable_status_codes: list[GrpcStatus] = field(
        default_factory=lambda: [GrpcStatus.unavailable, GrpcStatus.deadline_exceeded]
    )

    def to_rpc(self) -> RpcRetryPolicy:
        """The same policy as ghostwire.rpc's (which caps attempts at 5 and draws
        each wait uniformly below the exponential ceiling: full jitter)."""
        if not 1 <= self.max_attempts <= MAX_RETRY_ATTEMPTS:
            raise ConfigError(f"max_attempts must be 1..{MAX_RETRY_ATTEMPTS}")
        try:
            backoff = BackoffPolicy(
                initial=self.initial_backoff_ms / 1000,
                multiplier=self.backoff_multiplier,
                max_backoff=self.max_backoff_ms / 1000,
                min_connect_timeout=0.0,
            )
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        statuses = frozenset(int(GrpcStatus.of(s)) for s in self.retryable_status_codes)
        return RpcRetryPolicy(self.max_attempts, statuses, backoff)


@dataclass
class ClientConfig:
    """``GrpcClient``'s config: the original's fields and defaults, plus TLS settings.

    ``max_retry_attempts`` / ``initial_backoff_ms`` / ``max_backoff_ms`` make
    the default retry policy (with the original's x1.5 and statuses).
    ``ca_file`` names a private CA; ``verify_tls=False`` skips certificate
    checks (tests only); ``server_name`` overrides the name checked.
    """

    max_connections: int = 10
    timeout_ms: int = 30000
    keepalive_timeout_ms: int = 60000
    max_retry_attempts: int = 3
    initial_backoff_ms: int = 1000
    max_backoff_ms: int = 30000
    enable_compression: bool = True
    enable_keepalive: bool = True
    ca_file: str | None = None
    verify_tls: bool = True
    server_name: str | None = None
    max_message_size: int = 4 << 20

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(
            max_attempts=self.max_retry_attempts,
            initial_backoff_ms=self.initial_backoff_ms,
            max_backoff_ms=self.max_backoff_ms,
        )


@dataclass
class CallOptions:
    """Per call: ``timeout_ms`` (per attempt), ``metadata``, ``retry_policy``, and
    ghostwire's ``idempotent`` (retries after the server may have run the call
    need it; see the migration doc)."""

    timeout_ms: int | None = None
    metadata: GrpcMetadata | Mapping[str, str | bytes] | None = None
    retry_policy: RetryPolicy | None = None
    compression: bool = True
    idempotent: bool = False


__all__ = [
    "DEFAULT_PORT",
    "CallOptions",
    "ClientConfig",
    "GrpcCall",
    "GrpcCallFailed",
    "GrpcConfig",
    "GrpcMessage",
    "GrpcMetadata",
    "GrpcRequest",
    "GrpcResponse",
    "GrpcStatus",
    "HealthStatus",
    "InvalidGrpcMessage",
    "NoResponseData",
    "RegisteredService",
    "RetryPolicy",
    "ServerStats",
    "ServiceType",
    "Transport",
    "decode_messages",
]
