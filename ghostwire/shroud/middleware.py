"""The original's built-in middleware, working: CORS, logging, compression, security headers.

Each is an ``async def mw(req, res, next)``. Differences from the original:
CORS answers an ``OPTIONS`` preflight itself (204) instead of being
overwritten by the 404 that followed; logging logs after the handler, with
the real status and time; compression really gzips (the original's did
nothing).
"""

from __future__ import annotations

import gzip
import logging
import time
from typing import Any

from .message import UnifiedRequest, UnifiedResponse

log = logging.getLogger("ghostwire.shroud")

CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, POST, PUT, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "Content-Type, Authorization",
}

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}

COMPRESS_MIN_SIZE = 1024


async def cors(req: UnifiedRequest, res: UnifiedResponse, next: Any) -> None:
    for name, value in CORS_HEADERS.items():
        res.setHeader(name, value)
    if req.method == "OPTIONS":
        res.setStatus(204)  # a preflight: answered here
        return
    await next()


async def logging_middleware(req: UnifiedRequest, res: UnifiedResponse, next: Any) -> None:
    started = time.perf_counter()
    await next()
    elapsed_ms = (time.perf_counter() - started) * 1000
    log.info("%s %s - %d (%.2fms)", req.method, req.path, res.status, elapsed_ms)


async def compression(req: UnifiedRequest, res: UnifiedResponse, next: Any) -> None:
    await next()
    accepts = (req.getHeader("accept-encoding") or "").lower()
    body = res.body
    if (
        "gzip" in accepts
        and len(body) >= COMPRESS_MIN_SIZE
        and res.getHeader("content-encoding") is None
        and res.status not in (204, 304)
    ):
        res.body = gzip.compress(body)
        res.setHeader("Content-Encoding", "gzip")
        res.headers.add("Vary", "Accept-Encoding")


async def security_headers(req: UnifiedRequest, res: UnifiedResponse, next: Any) -> None:
    await next()
    for name, value in SECURITY_HEADERS.items():
        if res.getHeader(name) is None:
            res.setHeader(name, value)


__all__ = ["compression", "cors", "logging_middleware", "security_headers"]
