"""Route patterns: exact paths, ``:name`` parameters and a trailing ``*`` (pure, no I/O).

As the original's HTTP/3 router: a pattern is split on ``/`` (empty
segments skipped); ``:name`` captures one segment, ``*`` as the last
segment captures the rest (``path_params["*"]``); other segments must match
exactly. Routes are tried in registration order and the first match wins.
Segments are percent-decoded after splitting, so ``%2F`` stays inside one
parameter.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any
from urllib.parse import unquote

from .errors import ConfigError


class RouteKind(Enum):
    http = "http"
    websocket = "websocket"


@dataclass(frozen=True)
class Pattern:
    text: str
    segments: tuple[str, ...]

    @classmethod
    def compile(cls, text: str) -> Pattern:
        if not text.startswith("/"):
            raise ConfigError(f"a route path must start with '/', got {text!r}")
        segments = tuple(s for s in text.split("/") if s)
        for i, segment in enumerate(segments):
            if segment == "*" and i != len(segments) - 1:
                raise ConfigError(f"'*' must be the last segment of {text!r}")
            if segment.startswith(":") and len(segment) == 1:
                raise ConfigError(f"a ':' parameter needs a name in {text!r}")
        return cls(text, segments)

    def match(self, path_segments: Sequence[str]) -> dict[str, str] | None:
        """The captured parameters, or ``None`` if the path does not match."""
        params: dict[str, str] = {}
        for i, segment in enumerate(self.segments):
            if segment == "*":
                params["*"] = "/".join(path_segments[i:])
                return params
            if i >= len(path_segments):
                return None
            if segment.startswith(":"):
                params[segment[1:]] = path_segments[i]
            elif segment != path_segments[i]:
                return None
        return params if len(path_segments) == len(self.segments) else None


def split_path(raw_path: str) -> list[str]:
    """A request path's segments, percent-decoded one by one."""
    return [unquote(s) for s in raw_path.split("/") if s]


@dataclass
class Route:
    method: str | None  # None: any method (the documented addHandler)
    pattern: Pattern
    handler: Callable[..., Any]
    kind: RouteKind = RouteKind.http


@dataclass
class Match:
    route: Route
    params: dict[str, str]


@dataclass
class RouteTable:
    routes: list[Route] = field(default_factory=list)

    def add(
        self,
        method: str | None,
        path: str,
        handler: Callable[..., Any],
        kind: RouteKind = RouteKind.http,
    ) -> Route:
        if not callable(handler):
            raise ConfigError(f"the handler for {path!r} is not callable: {handler!r}")
        route = Route(method.upper() if method else None, Pattern.compile(path), handler, kind)
        self.routes.append(route)
        return route

    def find(self, method: str, raw_path: str, kind: RouteKind) -> Match | None:
        """The first route of ``kind`` matching; a HEAD request may use a GET route."""
        segments = split_path(raw_path)
        fallback: Match | None = None
        for route in self.routes:
            if route.kind is not kind:
                continue
            params = route.pattern.match(segments)
            if params is None:
                continue
            if route.method is None or route.method == method:
                return Match(route, params)
            if method == "HEAD" and route.method == "GET" and fallback is None:
                fallback = Match(route, params)
        return fallback

    def allowed_methods(self, raw_path: str) -> list[str]:
        """Methods that have a route for this path (for 405's ``Allow``)."""
        segments = split_path(raw_path)
        methods: list[str] = []
        for route in self.routes:
            if route.kind is RouteKind.http and route.pattern.match(segments) is not None:
                if route.method and route.method not in methods:
                    methods.append(route.method)
        return methods


__all__ = ["Match", "Pattern", "Route", "RouteKind", "RouteTable", "split_path"]
