"""Services and their methods: the registry the dispatcher serves.

A :class:`Service` collects handlers under a name::

    zvm = rpc.Service("zvm")

    @zvm.call                       # one request, one reply
    async def get_balance(ctx, address: bytes) -> int: ...

    @zvm.call(idempotent=True, timeout=5.0, authorize=is_admin)
    async def call_contract(ctx, address: bytes, method: str, args: list) -> dict: ...

    @zvm.events(policy="drop_oldest", buffer=256)   # an async generator
    async def logs(ctx, address: bytes): ...

    @zvm.stream                     # bidirectional
    async def relay(ctx, stream: rpc.BidiStream) -> None: ...

The handler's signature is read once, here, into an :class:`ArgumentBinder`;
a call only matches its arguments against that precomputed table (no
``inspect`` per call). A missing, unknown or mistyped argument is
INVALID_ARGUMENT naming the argument, and the handler never runs.
"""

from __future__ import annotations

import enum
import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, overload

from ..quic.net.suspension import may_suspend
from .checks import Checker, checker_for, exact_types
from .events import DEFAULT_BUFFER, POLICIES, Policy
from .status import RpcError, Status

F = TypeVar("F", bound=Callable[..., Any])
Authorize = Callable[[Any], Any]
"""``authorize(ctx)`` -> bool (or an awaitable of one); False means PERMISSION_DENIED."""


class MethodKind(enum.Enum):
    UNARY = "call"
    EVENTS = "events"
    STREAM = "stream"


class ArgumentBinder:
    """Matches a call's arguments to a handler's parameters (built once per method)."""

    __slots__ = (
        "_exact",
        "_keywords",
        "checkers",
        "names",
        "positional",
        "required",
        "var_keyword",
        "var_positional",
    )

    def __init__(self, handler: Callable[..., Any], skip: int) -> None:
        signature = inspect.signature(handler)
        try:
            hints = _type_hints(handler)
        except Exception:  # unresolvable annotations: check nothing rather than fail
            hints = {}
        params = list(signature.parameters.values())
        if len(params) < skip:
            raise TypeError(f"{handler.__qualname__} must take {skip} leading parameter(s)")
        self.positional: list[str] = []
        self.names: set[str] = set()
        self.required: list[str] = []
        self.checkers: dict[str, Checker] = {}
        self.var_positional = False
        self.var_keyword = False
        for param in params[skip:]:
            kind = param.kind
            if kind is param.VAR_POSITIONAL:
                self.var_positional = True
                continue
            if kind is param.VAR_KEYWORD:
                self.var_keyword = True
                continue
            if kind is param.POSITIONAL_ONLY:
                raise TypeError(
                    f"{handler.__qualname__}: positional-only parameters are not supported"
                )
            if kind is param.POSITIONAL_OR_KEYWORD:
                self.positional.append(param.name)
            self.names.add(param.name)
            if param.default is param.empty:
                self.required.append(param.name)
            check = checker_for(hints.get(param.name, Any))
            if check is not None:
                self.checkers[param.name] = check
        # The fast path of bind (compiled once): every parameter given by
        # keyword, nothing else. Then the checks only need each value's exact
        # type (``exact_types``); any other type goes through the predicate.
        self._keywords = frozenset(self.names)
        self._exact = tuple(
            (name, exact_types(check), check) for name, check in self.checkers.items()
        )

    def bind(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """The handler's keyword arguments, or RpcError(INVALID_ARGUMENT).

        ``kwargs`` is not changed (nor returned): the result is a new dict."""
        if not args and kwargs.keys() == self._keywords:
            # Exactly the parameters, by keyword (what clients send): only the
            # types to check, in one pass without a call for the common types.
            for name, exact, check in self._exact:
                value = kwargs[name]
                if type(value) not in exact and not check[0](value):
                    raise _mistyped(name, check, value)
            return dict(kwargs)
        positional = self.positional
        if len(args) > len(positional):
            raise RpcError(
                Status.INVALID_ARGUMENT,
                f"too many positional arguments: takes {len(positional)}, got {len(args)}",
            )
        values = dict(zip(positional, args, strict=False))
        names = self.names
        for name, value in kwargs.items():
            if name not in names and not self.var_keyword:
                raise RpcError(Status.INVALID_ARGUMENT, f"unknown argument {name!r}")
            if name in values:
                raise RpcError(Status.INVALID_ARGUMENT, f"argument {name!r} given twice")
            values[name] = value
        for name in self.required:
            if name not in values:
                raise RpcError(Status.INVALID_ARGUMENT, f"missing argument {name!r}")
        checkers = self.checkers
        if checkers:
            for name, value in values.items():
                entry = checkers.get(name)
                if entry is not None and not entry[0](value):
                    raise _mistyped(name, entry, value)
        return values


def _mistyped(name: str, check: Checker, value: Any) -> RpcError:
    return RpcError(
        Status.INVALID_ARGUMENT,
        f"argument {name!r} must be {check[1]}, not {type(value).__name__}",
    )


def _type_hints(handler: Callable[..., Any]) -> dict[str, Any]:
    import typing

    return typing.get_type_hints(handler)


@dataclass(frozen=True, slots=True)
class MethodOptions:
    idempotent: bool = False
    timeout: float | None = None  # the longest this method may run (caps the caller's)
    authorize: Authorize | None = None
    policy: Policy = "backpressure"  # event channels only
    buffer: int = DEFAULT_BUFFER  # event channels only


@dataclass(frozen=True, slots=True)
class Method:
    """One registered method: its full name, kind, handler and options."""

    name: str
    kind: MethodKind
    handler: Callable[..., Any]
    binder: ArgumentBinder
    options: MethodOptions
    #: False when the handler cannot reach a schedule point (ghostwire.quic.net.suspension).
    may_suspend: bool = True


class _Decorator:
    """``@svc.call`` and ``@svc.call(option=...)`` in one object."""

    def __init__(self, service: Service, kind: MethodKind) -> None:
        self._service = service
        self._kind = kind

    @overload
    def __call__(self, handler: F, /) -> F: ...
    @overload
    def __call__(
        self,
        /,
        *,
        name: str | None = None,
        idempotent: bool = False,
        timeout: float | None = None,
        authorize: Authorize | None = None,
        policy: Policy = "backpressure",
        buffer: int = DEFAULT_BUFFER,
    ) -> Callable[[F], F]: ...
    def __call__(self, handler: Any = None, /, *, name: str | None = None, **options: Any) -> Any:
        if handler is not None:
            return self._service._register(handler, self._kind, None, MethodOptions())
        opts = MethodOptions(**options)

        def decorate(handler: F) -> F:
            return self._service._register(handler, self._kind, name, opts)

        return decorate


class Service:
    """A named group of methods: calls, event channels and bidirectional streams."""

    def __init__(self, name: str) -> None:
        if not name or "." in name or "/" in name:
            raise ValueError(f"a service name is a non-empty name without '.' or '/': {name!r}")
        self.name = name
        self.methods: dict[str, Method] = {}
        self.call = _Decorator(self, MethodKind.UNARY)
        self.events = _Decorator(self, MethodKind.EVENTS)
        self.stream = _Decorator(self, MethodKind.STREAM)

    def _register(
        self, handler: F, kind: MethodKind, name: str | None, options: MethodOptions
    ) -> F:
        method_name = name or handler.__name__
        if not method_name or "." in method_name or "/" in method_name:
            raise ValueError(f"bad method name {method_name!r}")
        if method_name in self.methods:
            raise ValueError(f"{self.name}.{method_name} is already registered")
        _check_handler(handler, kind, options)
        skip = 2 if kind is MethodKind.STREAM else 1  # ctx (and the stream)
        self.methods[method_name] = Method(
            f"{self.name}.{method_name}",
            kind,
            handler,
            ArgumentBinder(handler, skip),
            options,
            may_suspend(handler),
        )
        return handler

    def __repr__(self) -> str:
        return f"<Service {self.name} methods={sorted(self.methods)}>"


def _check_handler(handler: Callable[..., Any], kind: MethodKind, options: MethodOptions) -> None:
    if kind is MethodKind.EVENTS:
        if not inspect.isasyncgenfunction(handler):
            raise TypeError(f"@events handler {handler.__qualname__} must be an async generator")
        if options.policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, not {options.policy!r}")
        if options.buffer < 1:
            raise ValueError("buffer must hold at least one event")
    elif not inspect.iscoroutinefunction(handler):
        raise TypeError(f"handler {handler.__qualname__} must be an async function")
    if options.timeout is not None and not options.timeout > 0:
        raise ValueError("timeout must be positive")


__all__ = ["ArgumentBinder", "Method", "MethodKind", "MethodOptions", "Service"]
