"""The ZVM-style RPC service the shim's :class:`~.zvm_client.ZvmClient` talks to.

ZVM's ``QuicClient`` spoke to two daemons, ghostd (contracts, transactions,
balances, events) and walletd (wallets, signing). Here they are two
``ghostwire.rpc`` services over one :class:`ZvmBackend`:

=====================  ==========================================  =====================
ZVM operation          RPC method (keyword arguments = ZVM's       reply (ZVM's
                       payload fields; bytes as hex strings)       response payload)
=====================  ==========================================  =====================
``deployContract``     ``zvm.deploy_contract``                     ``{contract_address,
                                                                   gas_used, transaction_hash}``
``callContract``       ``zvm.call_contract``                       ``{return_data, gas_used,
                                                                   success}``
``submitTransaction``  ``zvm.submit_transaction``                  ``{transaction_hash,
                                                                   gas_used}``
``getBalance``         ``zvm.get_balance(address)``                ``{balance}``
``healthCheck``        ``zvm.health_check`` / ``wallet.health_check``  ``{status: "healthy"}``
``streamContract       ``zvm.contract_events(contract_address)``   events: ZVM's
Events``               (an event channel; cursor = log index)      ``ContractEvent``
``createWallet``       ``wallet.create_wallet(name, account_type)``  ``{wallet: {id, address,
                                                                   public_key}}``
``signTransaction``    ``wallet.sign_transaction(wallet_id, data)``  ``{signature}``
=====================  ==========================================  =====================

:func:`zvm_frame_handler` answers the same operations for peers that still
send ZVM's framed ``QuicRequest`` envelopes (:mod:`.zvm_serve`), so old and
new clients see one chain.

:class:`InMemoryChain` is a toy backend for tests and demos: balances, a
trivial "VM" (a call returns its input and emits a ``Call`` event), Ed25519
wallets, and an event log that subscribers resume by cursor. It is not a
blockchain.
"""

from __future__ import annotations

import hashlib
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import trio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .. import rpc
from .zvm_wire import (
    MalformedEnvelope,
    MessageType,
    QuicRequest,
    QuicResponse,
    address_from_hex,
    address_to_hex,
    payload_string,
)

GHOSTD_SERVICE = "zvm"
WALLETD_SERVICE = "wallet"
BASE_GAS = 21000
GAS_PER_BYTE = 16
MAX_LOG = 10_000  # events kept for resuming subscribers (older ones are dropped)


class ZvmBackend(Protocol):
    """What the services need from a chain (:class:`InMemoryChain` is one)."""

    def deploy_contract(
        self, bytecode: bytes, constructor_args: bytes, gas_limit: int, value: int, deployer: bytes
    ) -> dict[str, Any]: ...
    def call_contract(
        self, contract: bytes, function_data: bytes, gas_limit: int, caller: bytes, value: int
    ) -> dict[str, Any]: ...
    def submit_transaction(self, tx: dict[str, Any]) -> dict[str, Any]: ...
    def get_balance(self, address: bytes) -> int: ...
    def create_wallet(self, name: str, account_type: str) -> dict[str, Any]: ...
    def sign_transaction(self, wallet_id: str, data: str) -> dict[str, Any]: ...
    def events(self, contract: bytes, after: int | None) -> AsyncIterator[rpc.Event]: ...


def _hex(value: str | bytes) -> bytes:
    if isinstance(value, bytes):
        return value
    digits = value[2:] if value[:2] in ("0x", "0X") else value
    try:
        return bytes.fromhex(digits)
    except ValueError:
        raise rpc.RpcError(rpc.Status.INVALID_ARGUMENT, f"not hex: {value[:40]!r}") from None


def _address(value: str | bytes, what: str) -> bytes:
    if isinstance(value, bytes) and len(value) == 20:
        return value
    try:
        return address_from_hex(value.hex() if isinstance(value, bytes) else value)
    except MalformedEnvelope:
        raise rpc.RpcError(rpc.Status.INVALID_ARGUMENT, f"{what} is not an address") from None


@dataclass
class _Wallet:
    id: str
    name: str
    account_type: str
    key: Ed25519PrivateKey
    address: bytes


@dataclass
class InMemoryChain:
    """A toy chain; see the module docstring. ``balances`` funds addresses at genesis."""

    balances: dict[bytes, int] = field(default_factory=dict)
    block_number: int = 0
    contracts: dict[bytes, bytes] = field(default_factory=dict)
    wallets: dict[str, _Wallet] = field(default_factory=dict)
    nonces: dict[bytes, int] = field(default_factory=dict)
    log: deque[tuple[int, bytes, dict[str, Any]]] = field(
        default_factory=lambda: deque(maxlen=MAX_LOG)
    )
    next_log_index: int = 0
    _changed: trio.Event | None = None

    # -- state changes ------------------------------------------------------------------

    def _transfer(self, source: bytes, target: bytes, value: int) -> None:
        if value < 0:
            raise rpc.RpcError(rpc.Status.INVALID_ARGUMENT, "value must not be negative")
        if self.balances.get(source, 0) < value:
            raise rpc.RpcError(rpc.Status.FAILED_PRECONDITION, "insufficient balance")
        self.balances[source] = self.balances.get(source, 0) - value
        self.balances[target] = self.balances.get(target, 0) + value

    def _gas(self, data: bytes, gas_limit: int) -> int:
        gas = BASE_GAS + GAS_PER_BYTE * len(data)
        if gas > gas_limit:
            raise rpc.RpcError(rpc.Status.RESOURCE_EXHAUSTED, f"out of gas: needs {gas}")
        return gas

    def _new_block(self, *parts: bytes) -> str:
        self.block_number += 1
        digest = hashlib.sha256(self.block_number.to_bytes(8, "big") + b"".join(parts))
        return digest.hexdigest()

    def _emit(self, contract: bytes, name: str, data: bytes, topics: list[str], tx: str) -> None:
        event = {
            "event_name": name,
            "data": data.hex(),
            "topics": topics,
            "block_number": self.block_number,
            "transaction_hash": tx,
            "timestamp": int(time.time()),
        }
        self.log.append((self.next_log_index, contract, event))
        self.next_log_index += 1
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    def deploy_contract(
        self, bytecode: bytes, constructor_args: bytes, gas_limit: int, value: int, deployer: bytes
    ) -> dict[str, Any]:
        if not bytecode:
            raise rpc.RpcError(rpc.Status.INVALID_ARGUMENT, "empty bytecode")
        gas = self._gas(bytecode + constructor_args, gas_limit)
        nonce = self.nonces.get(deployer, 0)
        address = hashlib.sha256(deployer + nonce.to_bytes(8, "big")).digest()[:20]
        self._transfer(deployer, address, value)
        self.nonces[deployer] = nonce + 1
        self.contracts[address] = bytecode
        tx = self._new_block(b"deploy", deployer, bytecode)
        self._emit(address, "Deployed", constructor_args, [address_to_hex(deployer)], tx)
        return {
            "contract_address": address_to_hex(address),
            "gas_used": gas,
            "transaction_hash": tx,
        }

    def call_contract(
        self, contract: bytes, function_data: bytes, gas_limit: int, caller: bytes, value: int
    ) -> dict[str, Any]:
        if contract not in self.contracts:
            raise rpc.RpcError(rpc.Status.NOT_FOUND, f"no contract {address_to_hex(contract)}")
        gas = self._gas(function_data, gas_limit)
        self._transfer(caller, contract, value)
        tx = self._new_block(b"call", caller, contract, function_data)
        topics = [address_to_hex(caller), function_data[:4].hex()]
        self._emit(contract, "Call", function_data, topics, tx)
        return {"return_data": function_data.hex(), "gas_used": gas, "success": True}

    def submit_transaction(self, tx: dict[str, Any]) -> dict[str, Any]:
        source = _address(tx["from"], "from")
        target = _address(tx["to"], "to") if tx.get("to") else None
        data = _hex(tx.get("data") or "")
        gas = self._gas(data, int(tx.get("gas_limit", BASE_GAS)))
        nonce = tx.get("nonce")
        if nonce is not None and int(nonce) != self.nonces.get(source, 0):
            raise rpc.RpcError(rpc.Status.FAILED_PRECONDITION, f"bad nonce {nonce}")
        if target is None:
            return self.deploy_contract(data, b"", int(tx.get("gas_limit", 0)), 0, source)
        self._transfer(source, target, int(tx.get("value", 0)))
        self.nonces[source] = self.nonces.get(source, 0) + 1
        tx_hash = self._new_block(b"tx", source, target, data)
        if target in self.contracts:
            value = int(tx.get("value", 0)).to_bytes(32, "big")
            self._emit(target, "Transfer", value, [address_to_hex(source)], tx_hash)
        return {"transaction_hash": tx_hash, "gas_used": gas}

    def get_balance(self, address: bytes) -> int:
        return self.balances.get(address, 0)

    def create_wallet(self, name: str, account_type: str) -> dict[str, Any]:
        key = Ed25519PrivateKey.generate()
        public = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        address = hashlib.sha256(public).digest()[:20]
        wallet_id = f"wallet-{len(self.wallets) + 1}"
        self.wallets[wallet_id] = _Wallet(wallet_id, name, account_type, key, address)
        return {
            "wallet": {
                "id": wallet_id,
                "address": address_to_hex(address),
                "public_key": public.hex(),
            }
        }

    def sign_transaction(self, wallet_id: str, data: str) -> dict[str, Any]:
        wallet = self.wallets.get(wallet_id)
        if wallet is None:
            raise rpc.RpcError(rpc.Status.NOT_FOUND, f"no wallet {wallet_id!r}")
        return {"signature": wallet.key.sign(data.encode()).hex()}

    async def events(self, contract: bytes, after: int | None) -> AsyncIterator[rpc.Event]:
        """The contract's events after log index ``after``, then new ones as they come."""
        position = -1 if after is None else after
        while True:
            if self._changed is None:
                self._changed = trio.Event()
            changed = self._changed  # taken before the scan: nothing emitted meanwhile is missed
            for index, address, event in list(self.log):
                if index > position:
                    position = index
                    if address == contract:
                        yield rpc.Event(event, cursor=index)
            await changed.wait()


# -- the RPC services -------------------------------------------------------------------


def ghostd_service(backend: ZvmBackend) -> rpc.Service:
    """``zvm``: the ghostd side (contracts, transactions, balances, events)."""
    svc = rpc.Service(GHOSTD_SERVICE)

    @svc.call
    async def deploy_contract(
        ctx: rpc.Context,
        bytecode: str,
        deployer: str,
        constructor_args: str = "",
        gas_limit: int = 1_000_000,
        value: int = 0,
    ) -> dict[str, Any]:
        return backend.deploy_contract(
            _hex(bytecode), _hex(constructor_args), gas_limit, value, _address(deployer, "deployer")
        )

    @svc.call
    async def call_contract(
        ctx: rpc.Context,
        contract_address: str,
        caller: str,
        function_data: str = "",
        gas_limit: int = 100_000,
        value: int = 0,
    ) -> dict[str, Any]:
        contract = _address(contract_address, "contract_address")
        data = _hex(function_data)
        return backend.call_contract(contract, data, gas_limit, _address(caller, "caller"), value)

    @svc.call
    async def submit_transaction(ctx: rpc.Context, **tx: Any) -> dict[str, Any]:
        if "from" not in tx:
            raise rpc.RpcError(rpc.Status.INVALID_ARGUMENT, "missing argument 'from'")
        return backend.submit_transaction(tx)

    @svc.call(idempotent=True)
    async def get_balance(ctx: rpc.Context, address: str) -> dict[str, Any]:
        return {"balance": backend.get_balance(_address(address, "address"))}

    @svc.call(idempotent=True)
    async def health_check(ctx: rpc.Context) -> dict[str, Any]:
        return {"status": "healthy"}

    @svc.events
    async def contract_events(ctx: rpc.Context, contract_address: str) -> AsyncIterator[rpc.Event]:
        contract = _address(contract_address, "contract_address")
        after = ctx.resume_after if isinstance(ctx.resume_after, int) else None
        async for event in backend.events(contract, after):
            yield event

    return svc


def walletd_service(backend: ZvmBackend) -> rpc.Service:
    """``wallet``: the walletd side (wallets and signing)."""
    svc = rpc.Service(WALLETD_SERVICE)

    @svc.call
    async def create_wallet(
        ctx: rpc.Context, name: str, account_type: str = "standard", use_zquic: bool = True
    ) -> dict[str, Any]:
        return backend.create_wallet(name, account_type)

    @svc.call(idempotent=True)
    async def sign_transaction(
        ctx: rpc.Context, wallet_id: str, data: str, use_enhanced_crypto: bool = True
    ) -> dict[str, Any]:
        return backend.sign_transaction(wallet_id, data)

    @svc.call(idempotent=True)
    async def health_check(ctx: rpc.Context) -> dict[str, Any]:
        return {"status": "healthy"}

    return svc


def zvm_services(backend: ZvmBackend) -> list[rpc.Service]:
    """Both services over one backend (one node playing ghostd and walletd)."""
    return [ghostd_service(backend), walletd_service(backend)]


# -- the same operations for ZVM's framed envelopes ----------------------------------------

_FRAMED = {
    MessageType.CONTRACT_DEPLOY: (GHOSTD_SERVICE, "deploy_contract"),
    MessageType.CONTRACT_CALL: (GHOSTD_SERVICE, "call_contract"),
    MessageType.WALLET_TRANSACTION: (GHOSTD_SERVICE, "submit_transaction"),
    MessageType.BALANCE_QUERY: (GHOSTD_SERVICE, "get_balance"),
    MessageType.HEALTH_CHECK: (GHOSTD_SERVICE, "health_check"),
    MessageType.WALLET_CREATE: (WALLETD_SERVICE, "create_wallet"),
    MessageType.WALLET_SIGN: (WALLETD_SERVICE, "sign_transaction"),
}


def zvm_frame_handler(backend: ZvmBackend) -> Any:
    """A :func:`~.zvm_serve.serve_zvm_stream` handler answering from ``backend``."""
    dispatcher = rpc.Dispatcher(zvm_services(backend))

    async def handle(request: QuicRequest) -> QuicResponse:
        now = int(time.time())
        target = _FRAMED.get(request.message_type)
        if target is None:
            message = f"unsupported message type {request.message_type.name}"
            return QuicResponse(False, request.request_id, "", message, now)
        try:
            payload = request.payload_json() if request.payload.strip() else {}
            if not isinstance(payload, dict):
                raise rpc.RpcError(rpc.Status.INVALID_ARGUMENT, "the payload must be an object")
            method = dispatcher.resolve(f"{target[0]}.{target[1]}")
            ctx = rpc.Context(method.name)
            result = await dispatcher.unary(ctx, method, (), payload)
        except (rpc.RpcError, MalformedEnvelope) as exc:
            text = exc.message if isinstance(exc, rpc.RpcError) else str(exc)
            return QuicResponse(False, request.request_id, "", text, now)
        return QuicResponse(True, request.request_id, payload_string(result), None, now)

    return handle


__all__ = [
    "GHOSTD_SERVICE",
    "WALLETD_SERVICE",
    "InMemoryChain",
    "ZvmBackend",
    "ghostd_service",
    "walletd_service",
    "zvm_frame_handler",
    "zvm_services",
]
