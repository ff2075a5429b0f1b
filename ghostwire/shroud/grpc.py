"""The original's ``ghostwire.grpc`` namespace: ``GrpcServer``, ``GrpcClient`` and their types.

``import ghostwire.shroud as ghostwire`` then ``ghostwire.grpc.GrpcServer``
(as in Zig), or the same names at the top of :mod:`ghostwire.shroud`.
``grpc.server`` / ``grpc.grpc_client`` name the two halves, as the original's
``grpc.server`` and ``grpc.grpc_client`` modules did.
"""

from __future__ import annotations

from . import grpc_client, grpc_server
from .grpc_client import (
    ALL_RETRIES_FAILED,
    BlockingGrpcClient,
    GrpcClient,
    GrpcConnection,
    createGrpcClient,
    parse_target,
)
from .grpc_server import (
    HEALTH_SERVICE,
    METHOD_NOT_IMPLEMENTED,
    SERVICE_NOT_FOUND,
    EchoService,
    GrpcServer,
    GrpcService,
    GrpcServiceHandler,
    createGrpcServer,
)
from .grpc_types import (
    CallOptions,
    ClientConfig,
    GrpcCall,
    GrpcCallFailed,
    GrpcConfig,
    GrpcMessage,
    GrpcMetadata,
    GrpcRequest,
    GrpcResponse,
    GrpcStatus,
    HealthStatus,
    InvalidGrpcMessage,
    NoResponseData,
    RegisteredService,
    RetryPolicy,
    ServerStats,
    ServiceType,
    Transport,
)

server = grpc_server
client = grpc_client
GrpcResponseInternal = GrpcResponse
GrpcMethod = GrpcServiceHandler

__all__ = [
    "ALL_RETRIES_FAILED",
    "HEALTH_SERVICE",
    "METHOD_NOT_IMPLEMENTED",
    "SERVICE_NOT_FOUND",
    "BlockingGrpcClient",
    "CallOptions",
    "ClientConfig",
    "EchoService",
    "GrpcCall",
    "GrpcCallFailed",
    "GrpcClient",
    "GrpcConfig",
    "GrpcConnection",
    "GrpcMessage",
    "GrpcMetadata",
    "GrpcMethod",
    "GrpcRequest",
    "GrpcResponse",
    "GrpcResponseInternal",
    "GrpcServer",
    "GrpcService",
    "GrpcServiceHandler",
    "GrpcStatus",
    "HealthStatus",
    "InvalidGrpcMessage",
    "NoResponseData",
    "RegisteredService",
    "RetryPolicy",
    "ServerStats",
    "ServiceType",
    "Transport",
    "createGrpcClient",
    "createGrpcServer",
    "parse_target",
]
