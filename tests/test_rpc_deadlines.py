"""The RPC client's timed calls, kept by the pool's deadlines task
(ghostwire.deadlines, tests/test_deadlines.py) instead of a cancel scope each."""

from __future__ import annotations

import pytest
import trio
from test_rpc_calls import setup

import ghostwire.rpc as rpc

Status = rpc.Status


async def test_timed_calls_use_the_pools_deadlines() -> None:
    async with setup() as (probe, _, client):
        deadlines = client.pool.deadlines
        assert deadlines.available and not deadlines.running  # no timed call yet: no task
        with trio.fail_after(10):
            assert await client.call("zvm.echo", "quick", timeout=5) == "quick"
            # registered (its deadline is earlier than fail_after's), then done
            assert deadlines.held == 1 and deadlines.live == 0
            with pytest.raises(rpc.RpcError) as info:
                await client.call("zvm.hang", timeout=0.2)
            await probe.cancelled.wait()  # the server's handler was cancelled
        assert info.value.status is Status.DEADLINE_EXCEEDED
        assert "zvm.hang" in info.value.message
        assert deadlines.live == 0
        assert await client.call("zvm.echo", "alive", timeout=5) == "alive"


async def test_a_timeout_already_over_sends_nothing() -> None:
    async with setup() as (probe, _, client):
        with trio.fail_after(10):
            with pytest.raises(rpc.RpcError) as info:
                await client.call("zvm.get_balance", b"\x01", timeout=0)
            assert info.value.status is Status.DEADLINE_EXCEEDED
            assert await client.call("zvm.echo", "next") == "next"
        # The first call never left: the server saw only the second.
        assert [method for method, _ in probe.outcomes] == ["zvm.echo"]
        assert client.pool.deadlines.held == 0
