"""ghostwire.rpc: services, calls, event channels and streams over QUIC.

::

    import ghostwire.rpc as rpc

    zvm = rpc.Service("zvm")

    @zvm.call
    async def get_balance(ctx: rpc.Context, address: bytes) -> int: ...

    server = rpc.Server([zvm], config=quic.ServerConfig(alpn=[rpc.ALPN], certfile=..., keyfile=...))
    listener = await nursery.start(server.serve, 4433)

    async with rpc.connect("localhost:4433", config=quic.ClientConfig(alpn=[rpc.ALPN])) as client:
        balance = await client.call("zvm.get_balance", address=b"\\x01" * 20)

The wire protocol is specified in docs/protocol.md.
"""

from .bidi import BidiStream
from .client import (
    CallInfo,
    CallNotStarted,
    Client,
    ClientInterceptor,
    MethodStub,
    RpcConnection,
    ServiceStub,
    Subscription,
    connect,
)
from .codec import BIGINT_EXT, CodecError
from .context import Context, Peer
from .dispatch import Dispatcher, DispatchStats, Interceptor
from .events import Event, EventBuffer, Policy
from .framing import DEFAULT_MAX_MESSAGE_SIZE, FramingError, MessageTooLarge
from .limits import Limits
from .pool import NoEndpointAvailable, Pool
from .resilience import CircuitState, ConnectivityState, Reconnected, ServingStatus
from .resilient import ResilientSubscription
from .server import ConnectionState, RpcListener, Server, serve
from .service import Method, MethodKind, MethodOptions, Service
from .status import RpcError, Status
from .supervisor import PoolOptions
from .wire import ALPN

__all__ = [
    "ALPN",
    "BIGINT_EXT",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "BidiStream",
    "CallInfo",
    "CallNotStarted",
    "CircuitState",
    "Client",
    "ClientInterceptor",
    "CodecError",
    "ConnectionState",
    "ConnectivityState",
    "Context",
    "DispatchStats",
    "Dispatcher",
    "Event",
    "EventBuffer",
    "FramingError",
    "Interceptor",
    "Limits",
    "MessageTooLarge",
    "Method",
    "MethodKind",
    "MethodOptions",
    "MethodStub",
    "NoEndpointAvailable",
    "Peer",
    "Policy",
    "Pool",
    "PoolOptions",
    "Reconnected",
    "ResilientSubscription",
    "RpcConnection",
    "RpcError",
    "RpcListener",
    "Server",
    "Service",
    "ServiceStub",
    "ServingStatus",
    "Status",
    "Subscription",
    "connect",
    "serve",
]
