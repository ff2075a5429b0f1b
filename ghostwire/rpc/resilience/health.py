"""A ``grpc.health.v1``-style health service, and the status registry behind it.

Theory of operation
-------------------
Every server keeps a :class:`HealthStatus` registry: one
:class:`~.states.ServingStatus` per service name, plus the server as a
whole under the empty name ``""`` (gRPC's convention). The server (or the
application) sets it; :func:`health_service` publishes it as an ordinary
:class:`~ghostwire.rpc.Service` named ``health`` with two methods:

* ``health.check(service="")`` -> ``"SERVING"`` | ``"NOT_SERVING"`` |
  ``"SERVICE_UNKNOWN"`` (a name; :func:`parse_status` turns it back into
  the enum). gRPC's ``Check`` answers an unknown service with the NOT_FOUND
  error; we answer SERVICE_UNKNOWN, as its ``Watch`` does, so a caller reads
  one value instead of catching one error.
* ``health.watch(service="")``: an event channel whose first event is the
  current status and then one event per change. It is state, not a log: a
  slow watcher skips intermediate values and sees the newest (nothing is
  queued per watcher, so memory stays bounded however many watch). Its
  events carry no cursor: a watcher that resubscribes simply receives the
  current status first.

gRPC names the service ``grpc.health.v1.Health``; our service names may not
contain dots (a method's full name is ``service.method``), hence ``health``.

A client takes an endpoint out of balancing while it says NOT_SERVING
(``EndpointHandle.serving``). For a deploy, :meth:`HealthStatus.drain`
turns every service NOT_SERVING and pins it there, so clients move new calls
elsewhere before the server starts refusing them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable

import trio

from ..context import Context
from ..events import Event
from ..service import Service
from .states import ServingStatus

__all__ = ["SERVICE_NAME", "HealthStatus", "health_service", "parse_status"]

#: The health service's name: methods ``health.check`` and ``health.watch``.
SERVICE_NAME = "health"

#: The empty service name stands for the whole server.
SERVER = ""


def parse_status(value: object) -> ServingStatus:
    """A status from a ``check`` reply or ``watch`` event (a name or its number);
    anything unrecognised is UNKNOWN."""
    if isinstance(value, str):
        return ServingStatus.__members__.get(value, ServingStatus.UNKNOWN)
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return ServingStatus(value)
        except ValueError:
            return ServingStatus.UNKNOWN
    return ServingStatus.UNKNOWN


class HealthStatus:
    """The serving status of a server and its services; changes are awaitable.

    The server as a whole (``""``) starts SERVING; services start as given
    (SERVING by default) or are added with :meth:`set`.
    """

    def __init__(self, services: Iterable[str] = ()) -> None:
        self._statuses: dict[str, ServingStatus] = {SERVER: ServingStatus.SERVING}
        for name in services:
            self._statuses[name] = ServingStatus.SERVING
        self._changed = trio.Event()
        self._draining = False

    def get(self, service: str = SERVER) -> ServingStatus:
        """The status of ``service``; SERVICE_UNKNOWN if it was never set."""
        return self._statuses.get(service, ServingStatus.SERVICE_UNKNOWN)

    def set(self, service: str, status: ServingStatus) -> None:
        """Set a status (ignored once :meth:`drain` has begun: a draining
        server stays NOT_SERVING)."""
        if status is ServingStatus.SERVICE_UNKNOWN:
            raise ValueError("SERVICE_UNKNOWN is an answer, not a status to set; use clear()")
        if self._draining:
            return
        if self._statuses.get(service) is not status:
            self._statuses[service] = status
            self._notify()

    def clear(self, service: str) -> None:
        """Forget ``service`` (it answers SERVICE_UNKNOWN from now on)."""
        if service != SERVER and self._statuses.pop(service, None) is not None:
            self._notify()

    def drain(self) -> None:
        """Every service, and the server, NOT_SERVING for good (a graceful shutdown)."""
        self._draining = True
        changed = False
        for name, status in self._statuses.items():
            if status is not ServingStatus.NOT_SERVING:
                self._statuses[name] = ServingStatus.NOT_SERVING
                changed = True
        if changed:
            self._notify()

    @property
    def draining(self) -> bool:
        return self._draining

    def snapshot(self) -> dict[str, str]:
        """Plain data: service name -> status name."""
        return {name: status.name for name, status in sorted(self._statuses.items())}

    async def watch(self, service: str = SERVER) -> AsyncIterator[ServingStatus]:
        """The current status of ``service``, then each new one as it changes.

        Latest-value semantics: a consumer slower than the changes sees the
        newest status, never a backlog. Runs until the consumer stops.
        """
        last: ServingStatus | None = None
        while True:
            changed = self._changed  # take it before reading, so no change slips by
            current = self.get(service)
            if current is not last:
                last = current
                yield current
            else:
                await changed.wait()

    def _notify(self) -> None:
        woken, self._changed = self._changed, trio.Event()
        woken.set()


def health_service(registry: HealthStatus) -> Service:
    """The ``health`` service answering from ``registry`` (one per server)."""
    health = Service(SERVICE_NAME)

    @health.call(idempotent=True)
    async def check(ctx: Context, service: str = SERVER) -> str:
        return registry.get(service).name

    @health.events
    async def watch(ctx: Context, service: str = SERVER) -> AsyncIterator[Event]:
        async for status in registry.watch(service):
            yield Event(status.name)

    return health
