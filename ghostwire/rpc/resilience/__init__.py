"""Building blocks of a client that survives: states, backoff, circuits, retries,
balancing, metrics and health (see docs/rpc-client.md).

Each is a small module, sans-IO where it can be (time is passed in), with
thin trio parts on trio's clock so ``trio.testing.MockClock`` drives them:

========================  ===================================================
``backoff``               capped exponential backoff with full jitter (sans-IO)
``states``                gRPC's connectivity states; awaitable changes (trio)
``circuit``               per-endpoint circuit breaker (sans-IO)
``retry``                 retry policy and gRPC retry throttling (sans-IO)
``balancer``              ``least_outstanding`` / ``round_robin`` (sans-IO)
``runners``               reconnect and retry loops on trio's clock (trio)
``resume``                a subscription's resume cursor, duplicate filter (sans-IO)
``metrics``               per-method / endpoint / server records, snapshots
``prometheus``            exposition via the optional prometheus-client
``health``                the health service and its status registry (trio)
========================  ===================================================

``prometheus`` and ``health`` are not imported here: the first needs an
optional package, the second the RPC service layer.
"""

from .backoff import DEFAULT_CONNECT_BACKOFF, Backoff, BackoffPolicy, ConnectAttempt
from .balancer import (
    BALANCERS,
    Balancer,
    EndpointHandle,
    Lease,
    LeastOutstanding,
    RoundRobin,
    make_balancer,
)
from .circuit import CircuitBreaker, CircuitOpen, CircuitPolicy, CircuitState, Permit
from .metrics import (
    LATENCY_BUCKETS,
    ClientMetrics,
    ClientSnapshot,
    EndpointMetrics,
    EndpointSnapshot,
    MethodMetrics,
    MethodSnapshot,
    ServerMetrics,
    ServerSnapshot,
)
from .resume import Reconnected, ResumeTracker
from .retry import CallRetryState, GiveUp, RetryDecision, RetryPolicy, RetryThrottle
from .runners import (
    AttemptFailure,
    ConnectTimeout,
    call_with_retries,
    connect_with_backoff,
    retry_after_failure,
)
from .states import (
    ConnectivityState,
    InvalidStateTransition,
    ServingStatus,
    StateHolder,
    StateShutdown,
)

__all__ = [
    "BALANCERS",
    "DEFAULT_CONNECT_BACKOFF",
    "LATENCY_BUCKETS",
    "AttemptFailure",
    "Backoff",
    "BackoffPolicy",
    "Balancer",
    "CallRetryState",
    "CircuitBreaker",
    "CircuitOpen",
    "CircuitPolicy",
    "CircuitState",
    "ClientMetrics",
    "ClientSnapshot",
    "ConnectAttempt",
    "ConnectTimeout",
    "ConnectivityState",
    "EndpointHandle",
    "EndpointMetrics",
    "EndpointSnapshot",
    "GiveUp",
    "InvalidStateTransition",
    "Lease",
    "LeastOutstanding",
    "MethodMetrics",
    "MethodSnapshot",
    "Permit",
    "Reconnected",
    "ResumeTracker",
    "RetryDecision",
    "RetryPolicy",
    "RetryThrottle",
    "RoundRobin",
    "ServerMetrics",
    "ServerSnapshot",
    "ServingStatus",
    "StateHolder",
    "StateShutdown",
    "call_with_retries",
    "connect_with_backoff",
    "make_balancer",
    "retry_after_failure",
]
