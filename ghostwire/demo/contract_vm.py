"""A toy contract VM and its RPC service: what ``ghostwire demo`` and
``examples/contract_vm_server.py`` serve.

The VM is a ledger of native balances (uint256 amounts) plus contracts made
from built-in templates (``token``, ``counter``); there is no bytecode. Every
transaction (deploy, contract call, native transfer) is mined at once into a
block of its own, and the logs it emits are numbered ``(block, index)``.

The service ``vm`` (every amount is an int from 0 to 2**256 - 1; addresses are
20 bytes; the sender is trusted, as nothing is signed here):

* ``deploy(sender, template, args)`` -> ``{"address", "block", "tx"}``
* ``call(sender, contract, method, args)`` -> a receipt
  ``{"block", "tx", "result", "logs"}`` (a transaction: it mines a block)
* ``query(contract, method, args)`` -> a value (read-only, no block)
* ``balance(address)`` -> int; ``transfer(sender, to, amount)`` -> a receipt
* ``head()`` -> the latest block height
* ``logs(contract=None, follow=True)``: an event channel of contract logs.
  Each event's cursor is ``[block, index]``; subscribe with ``after=cursor``
  (or ``after=<block height>``) to resume with the first log after it. With
  ``follow`` the channel then waits for new blocks; without it, it ends.

Errors are RPC statuses: NOT_FOUND (no such contract or method),
INVALID_ARGUMENT (a bad address, amount or cursor), FAILED_PRECONDITION
(insufficient balance).
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import trio

from .. import rpc

UINT256_MAX = (1 << 256) - 1
ADDRESS_SIZE = 20
NATIVE = b"\x00" * ADDRESS_SIZE
"""The "contract" address of native-coin logs (transfers)."""

Log = dict[str, Any]
Cursor = tuple[int, int]  # (block, index)


def _fail(status: rpc.Status, message: str) -> rpc.RpcError:
    return rpc.RpcError(status, message)


def check_address(value: Any, name: str = "address") -> bytes:
    if not isinstance(value, bytes) or len(value) != ADDRESS_SIZE:
        raise _fail(rpc.Status.INVALID_ARGUMENT, f"{name} must be {ADDRESS_SIZE} bytes")
    return value


def check_amount(value: Any, name: str = "amount") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= UINT256_MAX:
        raise _fail(rpc.Status.INVALID_ARGUMENT, f"{name} must be a uint256")
    return value


def parse_cursor(after: Any) -> Cursor:
    """``after`` as a position: None (from the start), a block height (after
    all its logs) or ``[block, index]`` (after that log)."""
    if after is None:
        return (-1, -1)
    if isinstance(after, int) and not isinstance(after, bool):
        return (after, 1 << 62)
    if (
        isinstance(after, (list, tuple))
        and len(after) == 2
        and all(isinstance(part, int) and not isinstance(part, bool) for part in after)
    ):
        return (after[0], after[1])
    raise _fail(rpc.Status.INVALID_ARGUMENT, "a cursor is a block height or [block, index]")


@dataclass
class Contract:
    template: str
    storage: dict[str, Any] = field(default_factory=dict)


@dataclass
class Block:
    height: int
    transactions: list[bytes] = field(default_factory=list)
    logs: list[Log] = field(default_factory=list)


class _Tx:
    """The transaction being executed: collects its logs."""

    def __init__(self, contract: bytes) -> None:
        self.contract = contract
        self.logs: list[tuple[bytes, str, dict[str, Any]]] = []

    def emit(self, event: str, **args: Any) -> None:
        self.logs.append((self.contract, event, args))


Method = Callable[[Contract, _Tx, bytes, dict[str, Any]], Any]


# -- the templates: constructors, transactions and queries ---------------------


def _token_init(contract: Contract, tx: _Tx, sender: bytes, args: dict[str, Any]) -> None:
    supply = check_amount(args.get("supply", 0), "supply")
    contract.storage.update(symbol=str(args.get("symbol", "TOK")), supply=supply)
    contract.storage["balances"] = {sender: supply}
    tx.emit("Transfer", sender=NATIVE, to=sender, amount=supply)


def _token_transfer(contract: Contract, tx: _Tx, sender: bytes, args: dict[str, Any]) -> bool:
    to = check_address(args.get("to"), "to")
    amount = check_amount(args.get("amount"))
    balances: dict[bytes, int] = contract.storage["balances"]
    if balances.get(sender, 0) < amount:
        raise _fail(rpc.Status.FAILED_PRECONDITION, "insufficient token balance")
    balances[sender] -= amount
    balances[to] = balances.get(to, 0) + amount
    tx.emit("Transfer", sender=sender, to=to, amount=amount)
    return True


def _counter_init(contract: Contract, tx: _Tx, sender: bytes, args: dict[str, Any]) -> None:
    contract.storage["value"] = check_amount(args.get("start", 0), "start")


def _counter_increment(contract: Contract, tx: _Tx, sender: bytes, args: dict[str, Any]) -> int:
    value = check_amount(contract.storage["value"] + check_amount(args.get("by", 1), "by"), "value")
    contract.storage["value"] = value
    tx.emit("Incremented", by=args.get("by", 1), value=value)
    return value


TEMPLATES: dict[str, dict[str, Method]] = {
    "token": {"__init__": _token_init, "transfer": _token_transfer},
    "counter": {"__init__": _counter_init, "increment": _counter_increment},
}
QUERIES: dict[str, dict[str, Callable[[Contract, dict[str, Any]], Any]]] = {
    "token": {
        "balance_of": lambda c, a: c.storage["balances"].get(check_address(a.get("owner")), 0),
        "total_supply": lambda c, a: c.storage["supply"],
        "symbol": lambda c, a: c.storage["symbol"],
    },
    "counter": {"value": lambda c, a: c.storage["value"]},
}


class ContractVM:
    """The chain: balances, contracts and blocks, in memory."""

    def __init__(self, genesis: dict[bytes, int] | None = None) -> None:
        self.balances: dict[bytes, int] = {
            check_address(a): check_amount(v) for a, v in (genesis or {}).items()
        }
        self.contracts: dict[bytes, Contract] = {}
        self.blocks: list[Block] = [Block(0)]
        self._nonce = 0
        self._new_block = trio.Event()

    @property
    def height(self) -> int:
        return self.blocks[-1].height

    # -- transactions --------------------------------------------------------

    def deploy(self, sender: bytes, template: str, args: dict[str, Any]) -> dict[str, Any]:
        check_address(sender, "sender")
        methods = TEMPLATES.get(template)
        if methods is None:
            raise _fail(rpc.Status.NOT_FOUND, f"no contract template {template!r}")
        address = self._hash(b"contract", sender)[:ADDRESS_SIZE]
        contract = Contract(template)
        tx = _Tx(address)
        methods["__init__"](contract, tx, sender, args)
        self.contracts[address] = contract
        receipt = self._mine(sender, tx, None)
        return {"address": address, "block": receipt["block"], "tx": receipt["tx"]}

    def call(
        self, sender: bytes, contract: bytes, method: str, args: dict[str, Any]
    ) -> dict[str, Any]:
        check_address(sender, "sender")
        target = self._contract(contract)
        function = TEMPLATES[target.template].get(method)
        if function is None or method.startswith("_"):
            raise _fail(rpc.Status.NOT_FOUND, f"{target.template} has no method {method!r}")
        tx = _Tx(contract)
        result = function(target, tx, sender, args)  # raises before any change on failure
        return self._mine(sender, tx, result)

    def transfer(self, sender: bytes, to: bytes, amount: int) -> dict[str, Any]:
        check_address(sender, "sender")
        check_address(to, "to")
        check_amount(amount)
        if self.balances.get(sender, 0) < amount:
            raise _fail(rpc.Status.FAILED_PRECONDITION, "insufficient balance")
        self.balances[sender] -= amount
        self.balances[to] = self.balances.get(to, 0) + amount
        tx = _Tx(NATIVE)
        tx.emit("Transfer", sender=sender, to=to, amount=amount)
        return self._mine(sender, tx, True)

    # -- reads ---------------------------------------------------------------

    def query(self, contract: bytes, method: str, args: dict[str, Any]) -> Any:
        target = self._contract(contract)
        function = QUERIES[target.template].get(method)
        if function is None:
            raise _fail(rpc.Status.NOT_FOUND, f"{target.template} has no query {method!r}")
        return function(target, args)

    def balance(self, address: bytes) -> int:
        return self.balances.get(check_address(address), 0)

    def logs_after(self, position: Cursor, contract: bytes | None = None) -> Iterator[Log]:
        """The logs after ``position``, oldest first (of ``contract`` only, if given)."""
        block, index = position
        for height in range(max(block, 0), self.height + 1):
            for log in self.blocks[height].logs:
                if (height, log["index"]) > (block, index):
                    if contract is None or log["contract"] == contract:
                        yield log

    async def wait_for_block(self, height: int) -> None:
        """Return once the chain is past ``height``."""
        while self.height <= height:
            await self._new_block.wait()

    # -- internals -----------------------------------------------------------

    def _contract(self, address: bytes) -> Contract:
        contract = self.contracts.get(check_address(address, "contract"))
        if contract is None:
            raise _fail(rpc.Status.NOT_FOUND, f"no contract at 0x{address.hex()}")
        return contract

    def _hash(self, *parts: bytes) -> bytes:
        self._nonce += 1
        return hashlib.sha256(b"".join(parts) + self._nonce.to_bytes(8, "big")).digest()

    def _mine(self, sender: bytes, tx: _Tx, result: Any) -> dict[str, Any]:
        block = Block(self.height + 1, [self._hash(b"tx", sender)])
        for index, (contract, event, args) in enumerate(tx.logs):
            block.logs.append(
                {
                    "block": block.height,
                    "index": index,
                    "tx": block.transactions[0],
                    "contract": contract,
                    "event": event,
                    "args": args,
                }
            )
        self.blocks.append(block)
        self._new_block.set()  # wake the subscribers; the next block gets a fresh event
        self._new_block = trio.Event()
        return {
            "block": block.height,
            "tx": block.transactions[0],
            "result": result,
            "logs": block.logs,
        }


def contract_service(vm: ContractVM, name: str = "vm") -> rpc.Service:
    """The RPC service of ``vm`` (see the module docs)."""
    svc = rpc.Service(name)

    @svc.call
    async def deploy(
        ctx: rpc.Context, sender: bytes, template: str, args: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        return vm.deploy(sender, template, args or {})

    @svc.call
    async def call(
        ctx: rpc.Context,
        sender: bytes,
        contract: bytes,
        method: str,
        args: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        return vm.call(sender, contract, method, args or {})

    @svc.call(idempotent=True)
    async def query(
        ctx: rpc.Context, contract: bytes, method: str, args: dict[str, Any] | None = None
    ) -> Any:
        return vm.query(contract, method, args or {})

    @svc.call(idempotent=True)
    async def balance(ctx: rpc.Context, address: bytes) -> int:
        return vm.balance(address)

    @svc.call
    async def transfer(ctx: rpc.Context, sender: bytes, to: bytes, amount: int) -> dict[str, Any]:
        return vm.transfer(sender, to, amount)

    @svc.call(idempotent=True)
    async def head(ctx: rpc.Context) -> int:
        return vm.height

    @svc.events(buffer=256)
    async def logs(
        ctx: rpc.Context, contract: bytes | None = None, follow: bool = True
    ) -> AsyncIterator[rpc.Event]:
        position = parse_cursor(ctx.resume_after)
        while True:
            seen = vm.height
            for log in vm.logs_after(position, contract):
                position = (log["block"], log["index"])
                yield rpc.Event(log, cursor=[log["block"], log["index"]])
            if not follow:
                return
            position = max(position, (seen, 1 << 62))  # nothing more of our logs up to `seen`
            await vm.wait_for_block(seen)

    return svc


__all__ = [
    "NATIVE",
    "UINT256_MAX",
    "ContractVM",
    "check_address",
    "check_amount",
    "contract_service",
    "parse_cursor",
]
