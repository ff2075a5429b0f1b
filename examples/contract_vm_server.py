"""A contract VM served over ghostwire RPC: deploy, call, query, balances,
and a channel of contract logs that subscribers resume from a cursor.

    python examples/contract_vm_server.py --certfile cert.pem --keyfile key.pem

The VM and its service are :mod:`ghostwire.demo.contract_vm` (the module
``ghostwire demo`` runs too): a ledger of uint256 balances, token and counter
contracts, one block per transaction, and the ``vm.logs`` channel whose
events carry ``[block, index]`` cursors. The genesis block gives
``--genesis-amount`` native coins to the address ``a1a1...a1`` (what the
client sends from).

Without a certificate it makes a throwaway CA and server certificate, and
writes the CA where the client can read it: to ``--write-ca FILE`` if given,
else into a temporary folder removed when the server stops. It prints the
client's command line. Ctrl-C (or SIGTERM) stops it gracefully: calls in
flight finish, subscribers are told UNAVAILABLE (and may resume elsewhere
``after`` their last cursor).
"""

from __future__ import annotations

import argparse
import signal
import tempfile
from functools import partial
from pathlib import Path

import trio

import ghostwire.quic as quic
import ghostwire.rpc as rpc
from ghostwire.certs import CertificateAuthority
from ghostwire.demo.contract_vm import ContractVM, contract_service

GENESIS_ACCOUNT = b"\xa1" * 20


def make_config(args: argparse.Namespace, ca_path: Path) -> quic.ServerConfig:
    if args.certfile:
        return quic.ServerConfig(alpn=[rpc.ALPN], certfile=args.certfile, keyfile=args.keyfile)
    ca = CertificateAuthority.create("ghostwire contract VM example CA")
    ca.write_pem(ca_path)
    identity = ca.issue(["localhost", "127.0.0.1"])
    print(f"no certificate given: made one; its CA is in {ca_path}", flush=True)
    return quic.ServerConfig(
        alpn=[rpc.ALPN], certificate_chain=identity.chain, private_key=identity.private_key
    )


async def main(args: argparse.Namespace, ca_path: Path) -> None:
    vm = ContractVM(genesis={GENESIS_ACCOUNT: args.genesis_amount})
    server = rpc.Server([contract_service(vm)], config=make_config(args, ca_path))
    async with trio.open_nursery() as nursery:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            listener = await nursery.start(partial(server.serve, args.port, host=args.host))
            print(f"contract VM on udp://{args.host}:{listener.port}", flush=True)
            if not args.certfile:
                print(
                    f"try: python examples/contract_vm_client.py --port {listener.port}"
                    f" --cafile {ca_path}",
                    flush=True,
                )
            async for _ in signals:  # Ctrl-C or SIGTERM: stop gracefully
                break
            print(f"stopping at block {vm.height}...", flush=True)
            await server.shutdown(grace=args.grace)  # serve() returns after this
    print("stopped", flush=True)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4433)
    parser.add_argument("--certfile")
    parser.add_argument("--keyfile")
    parser.add_argument("--write-ca", metavar="FILE", help="where to write the throwaway CA")
    parser.add_argument("--genesis-amount", type=int, default=10**30, metavar="AMOUNT")
    parser.add_argument("--grace", type=float, default=5.0, help="seconds for calls to finish")
    return parser.parse_args()


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.write_ca:
        trio.run(main, arguments, Path(arguments.write_ca))
    else:
        with tempfile.TemporaryDirectory(prefix="ghostwire-vm-") as folder:
            trio.run(main, arguments, Path(folder) / "ca.pem")
