"""``ghostwire demo`` exits 0 and prints its report; the contract VM it runs
keeps its promises (uint256 amounts, typed errors, resumable log cursors)."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest
import trio
from test_rpc_support import connected

import ghostwire.rpc as rpc
from ghostwire.demo.contract_vm import UINT256_MAX, ContractVM, contract_service, parse_cursor

ROOT = Path(__file__).resolve().parent.parent
TIME_LIMIT = 60  # seconds; the demo takes one or two

A = b"\x0a" * 20
B = b"\x0b" * 20
Status = rpc.Status


async def test_ghostwire_demo_exits_0_and_prints_its_report(tmp_path: Path) -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    with trio.fail_after(TIME_LIMIT):
        result = await trio.run_process(
            [sys.executable, "-m", "ghostwire", "demo"],
            cwd=tmp_path,
            env=env,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    out = result.stdout.decode()
    assert result.returncode == 0, result.stderr.decode()
    assert "Traceback" not in result.stderr.decode()
    assert re.search(r"^connected +: QUIC 0x00000001, TLS_\w+, ALPN ghostwire-rpc$", out, re.M)
    lost = re.search(
        r"^restart +: subscription lost \(UNAVAILABLE: .*after (\[\d+, \d+\])$", out, re.M
    )
    again = re.search(
        r"^restart +: resubscribed after (\[\d+, \d+\]): next log \[\d+, 0\]$", out, re.M
    )
    assert lost and again and lost[1] == again[1], out  # where it stood when the server went
    resumed = re.search(
        r"^resumed +: on port (\d+) after cursor \[\d+, \d+\]: .*none lost", out, re.M
    )
    served = re.search(r"on udp://127\.0\.0\.1:(\d+)$", out, re.M)
    assert resumed and served and resumed[1] == served[1]  # the restart reused the port
    report = out[out.index("-- report") :]
    assert re.search(r"^handshake +: \d+\.\d\d ms$", report, re.M), report
    assert re.search(
        r"^call latency : p50 \d+\.\d+ ms, p99 \d+\.\d+ ms \(300 calls\)$", report, re.M
    )
    assert re.search(r"^events +: \d+ events/s \(2000 logs in \d+\.\d+ s\)$", report, re.M)
    assert list(await trio.Path(tmp_path).iterdir()) == []  # nothing written to the working folder


async def test_ghostwire_demo_fails_in_one_line_when_it_cannot_serve(tmp_path: Path) -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    with trio.fail_after(TIME_LIMIT):
        result = await trio.run_process(  # 192.0.2.1 (TEST-NET-1) is no address of ours
            [sys.executable, "-m", "ghostwire", "demo", "--host", "192.0.2.1"],
            cwd=tmp_path,
            env=env,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    err = result.stderr.decode()
    assert result.returncode == 1, err
    assert re.fullmatch(r"demo: .+\n", err), err  # one line, no traceback


def test_cursors_parse_or_fail_typed() -> None:
    assert parse_cursor(None) == (-1, -1)
    assert parse_cursor([3, 1]) == (3, 1)
    assert parse_cursor(3)[0] == 3 and parse_cursor(3) > (3, 10**6)  # after all of block 3
    for bad in ("3", [1], [1, "2"], True, {"block": 1}):
        with pytest.raises(rpc.RpcError) as info:
            parse_cursor(bad)
        assert info.value.status is Status.INVALID_ARGUMENT


async def test_contract_vm_over_rpc() -> None:
    vm = ContractVM(genesis={A: UINT256_MAX})
    async with connected([contract_service(vm)]) as (_, client):
        with trio.fail_after(20):
            svc = client.service("vm")
            token = (await svc.deploy(A, "token", {"supply": UINT256_MAX}))["address"]
            receipt = await svc.call(A, token, "transfer", {"to": B, "amount": UINT256_MAX - 1})
            assert [log["event"] for log in receipt["logs"]] == ["Transfer"]
            assert await svc.query(token, "balance_of", {"owner": B}) == UINT256_MAX - 1
            assert await svc.query(token, "balance_of", {"owner": A}) == 1
            await svc.transfer(A, B, UINT256_MAX)
            assert (await svc.balance(A), await svc.balance(B)) == (0, UINT256_MAX)
            failures = [
                (svc.transfer(A, B, 1), Status.FAILED_PRECONDITION),
                (svc.transfer(A, B, UINT256_MAX + 1), Status.INVALID_ARGUMENT),
                (svc.transfer(A, B, -1), Status.INVALID_ARGUMENT),
                (svc.balance(b"short"), Status.INVALID_ARGUMENT),
                (svc.query(B, "balance_of", {"owner": A}), Status.NOT_FOUND),
                (svc.call(A, token, "mint", {}), Status.NOT_FOUND),
                (svc.call(A, token, "__init__", {}), Status.NOT_FOUND),
                (svc.deploy(A, "nft", {}), Status.NOT_FOUND),
            ]
            for call, status in failures:
                with pytest.raises(rpc.RpcError) as info:
                    await call
                assert info.value.status is status
            assert await svc.query(token, "balance_of", {"owner": A}) == 1  # nothing changed
            assert await svc.head() == 3


async def test_logs_resume_after_a_cursor_and_follow_new_blocks() -> None:
    vm = ContractVM(genesis={A: 100})
    counter = vm.deploy(A, "counter", {})["address"]
    for _ in range(3):
        vm.call(A, counter, "increment", {"by": 2})
        vm.transfer(A, B, 1)  # native logs between the counter's
    async with connected([contract_service(vm)]) as (_, client):
        with trio.fail_after(20):
            async with client.subscribe("vm.logs", contract=counter, follow=False) as events:
                first = [event async for event in events]
            assert [e.data["args"]["value"] for e in first] == [2, 4, 6]
            assert [e.cursor for e in first] == [[2, 0], [4, 0], [6, 0]]
            async with client.subscribe("vm.logs", follow=False, after=[2, 0]) as events:
                assert [e.cursor async for e in events] == [[3, 0], [4, 0], [5, 0], [6, 0], [7, 0]]
            async with client.subscribe("vm.logs", contract=counter, after=4) as events:
                assert (await events.receive()).cursor == [6, 0]
                vm.transfer(A, B, 1)  # not the counter's: not delivered
                vm.call(A, counter, "increment", {})
                live = await events.receive()
                assert (live.cursor, live.data["args"]["value"]) == ([9, 0], 7)
