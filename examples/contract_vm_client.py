"""A client of the contract VM example: deploy a token, move uint256 amounts,
query balances, read the token's logs, and follow new logs from a cursor.

    python examples/contract_vm_client.py --cafile CA.pem            # a session
    python examples/contract_vm_client.py --cafile CA.pem --follow   # tail the logs
    python examples/contract_vm_client.py --cafile CA.pem --follow --after 12,0

(``contract_vm_server.py`` prints the CA file to use.) ``--follow`` prints each
log with its cursor and waits for new blocks; when the server goes away it
reconnects and resubscribes ``after`` the last cursor it printed, so no log is
lost or repeated. Ctrl-C stops it.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import trio

import ghostwire.program
import ghostwire.quic as quic
import ghostwire.rpc as rpc

SENDER = b"\xa1" * 20  # funded in the server's genesis block
RECIPIENT = b"\xb0" * 20
RECONNECT_DELAY = 0.5  # seconds between attempts while the server is away


def describe(log: dict[str, Any]) -> str:
    args = ", ".join(
        f"{name}=0x{value.hex()}" if isinstance(value, bytes) else f"{name}={value}"
        for name, value in log["args"].items()
    )
    return f"block {log['block']} #{log['index']}: {log['event']}({args})"


async def session(client: rpc.Client) -> None:
    vm = client.service("vm")
    supply = 10**30  # amounts are uint256: past 64 bits is fine
    deployed = await vm.deploy(SENDER, "token", {"symbol": "EXA", "supply": supply})
    token = deployed["address"]
    print(f"deployed token 0x{token.hex()} in block {deployed['block']}")
    receipt = await vm.call(SENDER, token, "transfer", {"to": RECIPIENT, "amount": 3 * 10**28})
    print(f"transfer mined in block {receipt['block']}, tx 0x{receipt['tx'].hex()[:16]}...")
    for name, owner in (("sender", SENDER), ("recipient", RECIPIENT)):
        print(f"{name} holds {await vm.query(token, 'balance_of', {'owner': owner})} EXA")
    await vm.transfer(SENDER, RECIPIENT, 10**18)
    print(f"native balance of the recipient: {await vm.balance(RECIPIENT)}")
    try:
        await vm.transfer(RECIPIENT, SENDER, 10**40)
    except rpc.RpcError as exc:
        print(f"overspending is refused: {exc.status.name}: {exc.message}")
    async with client.subscribe("vm.logs", contract=token, follow=False) as events:
        async for event in events:
            print(f"log {event.cursor}: {describe(event.data)}")
        print(f"last cursor: {events.last_cursor} (resume with --follow --after ...)")


async def follow(args: argparse.Namespace, config: quic.ClientConfig) -> None:
    """Tail the logs for ever, resubscribing after the last cursor on failure."""
    after: Any = args.after
    while True:
        try:
            async with rpc.connect(f"{args.host}:{args.port}", config=config) as client:
                print(f"following logs after {after}", file=sys.stderr, flush=True)
                # resume=False: this loop resumes by itself, to show how
                subscription = client.subscribe("vm.logs", after=after, resume=False, follow=True)
                async with subscription as events:
                    async for event in events:
                        print(f"log {event.cursor}: {describe(event.data)}", flush=True)
                        after = event.cursor
        except rpc.RpcError as exc:
            if exc.status is not rpc.Status.UNAVAILABLE:
                raise
            print(f"server away ({exc.message}); resuming after {after}", file=sys.stderr)
        except quic.QuicError as exc:  # could not connect (yet)
            print(f"cannot connect ({exc}); retrying", file=sys.stderr, flush=True)
        await trio.sleep(RECONNECT_DELAY)


async def main(args: argparse.Namespace) -> None:
    config = quic.ClientConfig(alpn=[rpc.ALPN], cafile=args.cafile, server_name="localhost")
    if args.follow:
        await follow(args, config)
        return
    print(f"connecting to {args.host}:{args.port}...", file=sys.stderr, flush=True)
    async with rpc.connect(f"{args.host}:{args.port}", config=config) as client:
        await session(client)


def cursor(text: str) -> Any:
    """``12`` (after block 12) or ``12,0`` (after log 0 of block 12)."""
    parts = [int(part) for part in text.split(",")]
    return parts[0] if len(parts) == 1 else parts


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4433)
    parser.add_argument("--cafile", required=True, help="the CA of the server's certificate")
    parser.add_argument("--follow", action="store_true", help="tail the logs until Ctrl-C")
    parser.add_argument("--after", type=cursor, help="with --follow: resume after this cursor")
    return parser.parse_args()


if __name__ == "__main__":
    arguments = parse_args()
    try:
        # Ctrl-C cancels the program, then raises KeyboardInterrupt here.
        ghostwire.program.run(main, arguments)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
