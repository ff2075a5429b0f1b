"""Server limits and the per-client call rate limiter."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .framing import DEFAULT_MAX_MESSAGE_SIZE


@dataclass(frozen=True, slots=True)
class Limits:
    """What one server accepts; past any of them a call is RESOURCE_EXHAUSTED.

    ``max_message_size`` bounds every received message (4 MiB by default, as
    gRPC's receive limit); ``max_concurrent_calls`` the calls running at once
    on one connection (QUIC's MAX_STREAMS bounds them too: None leaves it to
    that); ``max_calls_per_second`` the calls one client address may start
    per second, with bursts of up to ``burst`` (default: one second's worth).
    """

    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    max_concurrent_calls: int | None = None
    max_calls_per_second: float | None = None
    burst: int | None = None

    def __post_init__(self) -> None:
        if self.max_message_size < 1:
            raise ValueError("max_message_size must be positive")
        if self.max_concurrent_calls is not None and self.max_concurrent_calls < 1:
            raise ValueError("max_concurrent_calls must be positive")
        if self.max_calls_per_second is not None and not self.max_calls_per_second > 0:
            raise ValueError("max_calls_per_second must be positive")


class RateLimiter:
    """Token buckets per client address, kept only while the client is connected."""

    def __init__(self, rate: float, burst: int | None) -> None:
        self.rate = rate
        self.burst = float(burst if burst is not None else max(1, int(rate)))
        self._buckets: dict[Any, list[float]] = {}  # key -> [tokens, last refill time]
        self._refs: dict[Any, int] = {}

    def attach(self, key: Any, now: float) -> None:
        self._refs[key] = self._refs.get(key, 0) + 1
        self._buckets.setdefault(key, [self.burst, now])

    def detach(self, key: Any) -> None:
        count = self._refs.get(key, 0) - 1
        if count <= 0:
            self._refs.pop(key, None)
            self._buckets.pop(key, None)
        else:
            self._refs[key] = count

    def allow(self, key: Any, now: float) -> bool:
        bucket = self._buckets.get(key)
        if bucket is None:
            return True
        tokens = min(self.burst, bucket[0] + (now - bucket[1]) * self.rate)
        bucket[1] = now
        if tokens < 1.0:
            bucket[0] = tokens
            return False
        bucket[0] = tokens - 1.0
        return True


__all__ = ["Limits", "RateLimiter"]
