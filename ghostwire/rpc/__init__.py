"""ghostwire.rpc: services, calls, event channels and streams over QUIC.

See docs/protocol.md for the wire protocol.
"""

from .codec import CodecError
from .context import Context, Peer
from .dispatch import Dispatcher, DispatchStats, Interceptor
from .events import Event, EventBuffer, Policy
from .framing import FramingError, MessageTooLarge
from .service import Method, MethodKind, MethodOptions, Service
from .status import RpcError, Status

__all__ = [
    "CodecError",
    "Context",
    "DispatchStats",
    "Dispatcher",
    "Event",
    "EventBuffer",
    "FramingError",
    "Interceptor",
    "MessageTooLarge",
    "Method",
    "MethodKind",
    "MethodOptions",
    "Peer",
    "Policy",
    "RpcError",
    "Service",
    "Status",
]
