"""A node that mines blocks and a wallet that follows them over one
long-lived connection, resuming after the last block it saw.

    python examples/node_wallet.py node --block-time 1
    python examples/node_wallet.py wallet --port 4433 --cafile CA.pem

The node serves ``chain.blocks`` (an event channel: one event per block, its
height as the cursor; ``after=<height>`` resumes with the next block) and
``chain.balance``. Each block pays a few random amounts (uint256) between a
handful of accounts, the wallet's among them. The wallet prints each block and
its balance; if the node goes away it reconnects and resubscribes after the
last height it printed, so it misses no block and sees none twice.

Without ``--certfile``/``--keyfile`` the node makes a throwaway CA (written to
``--write-ca FILE``, else to a temporary folder) and prints the wallet's
command line. Ctrl-C stops either side cleanly.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import signal
import sys
import tempfile
from collections import deque
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Any

import trio

import ghostwire.program
import ghostwire.quic as quic
import ghostwire.rpc as rpc
from ghostwire.certs import CertificateAuthority

WALLET = b"\x77" * 20
ACCOUNTS = [WALLET, *(bytes([n]) * 20 for n in range(1, 5))]
RECONNECT_DELAY = 0.5


class Chain:
    """The node's blocks (the last ``keep`` of them) and balances."""

    def __init__(self, keep: int, seed: int | None) -> None:
        self.blocks: deque[dict[str, Any]] = deque(maxlen=keep)
        self.balances = {account: 10**24 for account in ACCOUNTS}
        self.height = 0
        self._random = random.Random(seed)
        self._new_block = trio.Event()

    def mine(self) -> dict[str, Any]:
        payments = []
        for _ in range(self._random.randint(1, 4)):
            sender, recipient = self._random.sample(ACCOUNTS, 2)
            amount = self._random.randint(1, self.balances[sender] // 100)
            self.balances[sender] -= amount
            self.balances[recipient] += amount
            payments.append({"from": sender, "to": recipient, "amount": amount})
        self.height += 1
        parent = self.blocks[-1]["hash"] if self.blocks else b"\x00" * 32
        digest = hashlib.sha256(parent + self.height.to_bytes(8, "big")).digest()
        block = {
            "height": self.height,
            "hash": digest,
            "parent": parent,
            "payments": payments,
            "balances": dict(self.balances),  # after this block's payments
        }
        self.blocks.append(block)
        self._new_block.set()
        self._new_block = trio.Event()
        return block

    def blocks_after(self, height: int) -> list[dict[str, Any]]:
        oldest = self.blocks[0]["height"] if self.blocks else self.height + 1
        if height + 1 < oldest and height < self.height:
            raise rpc.RpcError(rpc.Status.OUT_OF_RANGE, f"blocks before {oldest} are pruned")
        return [block for block in self.blocks if block["height"] > height]

    async def wait_past(self, height: int) -> None:
        while self.height <= height:
            await self._new_block.wait()


def chain_service(chain: Chain) -> rpc.Service:
    svc = rpc.Service("chain")

    @svc.events(buffer=64)
    async def blocks(ctx: rpc.Context) -> AsyncIterator[rpc.Event]:
        after = ctx.resume_after
        if after is None:
            after = chain.height  # a fresh subscriber starts with the next block
        if isinstance(after, bool) or not isinstance(after, int):
            raise rpc.RpcError(rpc.Status.INVALID_ARGUMENT, "the cursor is a block height")
        while True:
            for block in chain.blocks_after(after):
                yield rpc.Event(block, cursor=block["height"])
                after = block["height"]
            await chain.wait_past(after)

    @svc.call(idempotent=True)
    async def balance(ctx: rpc.Context, address: bytes) -> int:
        return chain.balances.get(address, 0)

    return svc


# -- the node -------------------------------------------------------------------


def node_config(args: argparse.Namespace, ca_path: Path) -> quic.ServerConfig:
    if args.certfile:
        return quic.ServerConfig(alpn=[rpc.ALPN], certfile=args.certfile, keyfile=args.keyfile)
    ca = CertificateAuthority.create("ghostwire node example CA")
    ca.write_pem(ca_path)
    identity = ca.issue(["localhost", "127.0.0.1"])
    print(f"no certificate given: made one; its CA is in {ca_path}", flush=True)
    return quic.ServerConfig(
        alpn=[rpc.ALPN], certificate_chain=identity.chain, private_key=identity.private_key
    )


async def mine_forever(chain: Chain, block_time: float) -> None:
    while True:
        await trio.sleep(block_time)
        block = chain.mine()
        print(f"mined block {block['height']} (payments: {len(block['payments'])})", flush=True)


async def run_node(args: argparse.Namespace, ca_path: Path) -> None:
    chain = Chain(keep=args.keep, seed=args.seed)
    server = rpc.Server([chain_service(chain)], config=node_config(args, ca_path))
    async with trio.open_nursery() as nursery:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            listener = await nursery.start(partial(server.serve, args.port, host=args.host))
            print(f"node on udp://{args.host}:{listener.port}", flush=True)
            if not args.certfile:
                print(
                    f"try: python examples/node_wallet.py wallet --port {listener.port}"
                    f" --cafile {ca_path}",
                    flush=True,
                )
            nursery.start_soon(mine_forever, chain, args.block_time)
            async for _ in signals:
                break
            await server.shutdown(grace=1.0)  # wallets hear UNAVAILABLE
            nursery.cancel_scope.cancel()
    print("stopped", flush=True)


# -- the wallet -----------------------------------------------------------------


async def run_wallet(args: argparse.Namespace) -> None:
    config = quic.ClientConfig(alpn=[rpc.ALPN], cafile=args.cafile, server_name="localhost")
    seen = 0
    last: int | None = None
    while args.blocks is None or seen < args.blocks:
        try:
            async with rpc.connect(f"{args.host}:{args.port}", config=config) as client:
                balance = await client.call("chain.balance", WALLET)
                print(f"wallet 0x{WALLET.hex()[:8]}... holds {balance}", flush=True)
                print(f"following blocks after {last}", flush=True)
                async with client.subscribe("chain.blocks", after=last) as blocks:
                    async for event in blocks:
                        block = event.data
                        mine = sum(p["amount"] for p in block["payments"] if p["to"] == WALLET)
                        mine -= sum(p["amount"] for p in block["payments"] if p["from"] == WALLET)
                        print(
                            f"block {block['height']} 0x{block['hash'].hex()[:12]}: "
                            f"payments {len(block['payments'])}, mine {mine:+}, "
                            f"balance {block['balances'][WALLET]}",
                            flush=True,
                        )
                        last = event.cursor
                        seen += 1
                        if args.blocks is not None and seen >= args.blocks:
                            return
        except rpc.RpcError as exc:
            if exc.status is not rpc.Status.UNAVAILABLE:
                raise
            print(f"node away ({exc.message}); resuming after block {last}", flush=True)
        except quic.QuicError as exc:
            print(f"cannot reach the node ({exc}); retrying", flush=True)
        await trio.sleep(RECONNECT_DELAY)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    roles = parser.add_subparsers(dest="role", required=True)
    node = roles.add_parser("node", help="mine blocks and serve them")
    node.add_argument("--certfile")
    node.add_argument("--keyfile")
    node.add_argument("--write-ca", metavar="FILE", help="where to write the throwaway CA")
    node.add_argument("--block-time", type=float, default=1.0, metavar="SECONDS")
    node.add_argument("--keep", type=int, default=10_000, help="blocks kept for resuming")
    node.add_argument("--seed", type=int, help="seed of the random payments")
    wallet = roles.add_parser("wallet", help="follow the node's blocks")
    wallet.add_argument("--cafile", required=True, help="the CA of the node's certificate")
    wallet.add_argument("--blocks", type=int, help="stop after this many blocks")
    for role in (node, wallet):
        role.add_argument("--host", default="127.0.0.1")
        role.add_argument("--port", type=int, default=4433)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.role == "node":
        if args.write_ca:
            trio.run(run_node, args, Path(args.write_ca))
        else:
            with tempfile.TemporaryDirectory(prefix="ghostwire-node-") as folder:
                trio.run(run_node, args, Path(folder) / "ca.pem")
        return
    try:
        # Ctrl-C cancels the program, then raises KeyboardInterrupt here.
        ghostwire.program.run(run_wallet, args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
