"""ZVM's ``QuicClient`` operations over ``ghostwire.rpc`` (the server side is :mod:`.zvm_service`).

::

    client = ZvmClient(ZvmClientConfig(ghostd_endpoint="node:50051", ca_file="ca.pem"))
    async with client:                         # connect(): health-checks ghostd, as ZVM did
        deployed = await client.deployContract(
            ContractDeployRequest(bytecode=code, deployer=me, gas_limit=1_000_000)
        )
        result = await client.callContract(
            ContractCallRequest(contract_address=deployed.contract_address, function_data=b"..",
                                caller=me)
        )
        balance = await client.getBalance(me)
        async with client.streamContractEvents(deployed.contract_address) as events:
            while (event := await events.next()) is not None: ...

Every operation has a snake_case alias (``deploy_contract``, ...). Requests
take the dataclasses below, a dict with ZVM's field names, or keyword
arguments. Addresses are 20 bytes or 40 hex digits; byte fields are bytes
or hex. Failures raise :class:`ZvmError` (with the RPC ``status``); ZVM
returned ``success=false`` envelopes instead. Inside ``async with client:``
calls share one connection per endpoint; outside, each opens its own.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Generator, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

import trio

from .. import quic, rpc
from .errors import ShroudError
from .grpc_client import GrpcClient
from .grpc_types import ClientConfig
from .zvm_service import GHOSTD_SERVICE, WALLETD_SERVICE
from .zvm_wire import address_from_hex, address_to_hex


class ZvmError(ShroudError):
    """A ZVM operation failed; ``status`` is the RPC status, ``message`` the server's text."""

    def __init__(self, operation: str, status: rpc.Status, message: str) -> None:
        self.operation = operation
        self.status = status
        self.message = message
        super().__init__(f"{operation} failed: {status.name}: {message}")


class ServiceEndpoint(enum.Enum):
    """Which daemon ``healthCheck`` asks (ZVM's ``.ghostd`` / ``.walletd``)."""

    ghostd = "ghostd"
    walletd = "walletd"


def hex_address(value: str | bytes) -> str:
    """An address as ZVM's 40 hex digits (from 20 bytes or hex with or without ``0x``)."""
    if isinstance(value, bytes | bytearray):
        return address_to_hex(bytes(value))
    return address_to_hex(address_from_hex(value))


def hex_bytes(value: str | bytes) -> str:
    if isinstance(value, bytes | bytearray):
        return bytes(value).hex()
    return value[2:] if value[:2] in ("0x", "0X") else value


@dataclass
class ContractDeployRequest:
    bytecode: bytes | str
    deployer: bytes | str
    constructor_args: bytes | str = b""
    gas_limit: int = 1_000_000
    value: int = 0

    def payload(self) -> dict[str, Any]:
        return {
            "bytecode": hex_bytes(self.bytecode),
            "constructor_args": hex_bytes(self.constructor_args),
            "gas_limit": self.gas_limit,
            "value": self.value,
            "deployer": hex_address(self.deployer),
        }


@dataclass
class ContractCallRequest:
    contract_address: bytes | str
    caller: bytes | str
    function_data: bytes | str = b""
    gas_limit: int = 100_000
    value: int = 0

    def payload(self) -> dict[str, Any]:
        return {
            "contract_address": hex_address(self.contract_address),
            "function_data": hex_bytes(self.function_data),
            "gas_limit": self.gas_limit,
            "caller": hex_address(self.caller),
            "value": self.value,
        }


@dataclass
class TransactionRequest:
    """ZVM's ``TransactionRequest``; ``from_`` is its ``from`` (a Python keyword)."""

    from_: bytes | str
    to: bytes | str | None = None
    value: int = 0
    gas_limit: int = 21000
    gas_price: int = 1
    data: bytes | str = b""
    nonce: int | None = None

    def payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "from": hex_address(self.from_),
            "to": None if self.to is None else hex_address(self.to),
            "value": self.value,
            "gas_limit": self.gas_limit,
            "gas_price": self.gas_price,
            "data": hex_bytes(self.data),
        }
        if self.nonce is not None:
            payload["nonce"] = self.nonce
        return payload


@dataclass
class ContractDeployResponse:
    contract_address: str
    gas_used: int
    transaction_hash: str


@dataclass
class ContractCallResponse:
    return_data: str
    gas_used: int
    success: bool

    def returnBytes(self) -> bytes:
        return bytes.fromhex(self.return_data)

    return_bytes = returnBytes


@dataclass
class TransactionResponse:
    transaction_hash: str
    gas_used: int


@dataclass
class Wallet:
    id: str
    address: str
    public_key: str


@dataclass
class ContractEvent:
    event_name: str
    data: str
    topics: list[str] = field(default_factory=list)
    block_number: int = 0
    transaction_hash: str = ""
    timestamp: int = 0
    cursor: Any = None  # ghostwire's: resume after it with ``streamContractEvents(.., after=)``


T = TypeVar("T")


def _build(cls: type[T], values: Mapping[str, Any]) -> T:
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    return cls(**{k: v for k, v in values.items() if k in names})


def _request(cls: type[Any], request: Any, overrides: Mapping[str, Any]) -> dict[str, Any]:
    if request is None:
        request = dict(overrides)
    elif overrides:
        raise TypeError("give a request object or keyword arguments, not both")
    if isinstance(request, Mapping):
        values = dict(request)
        if "from" in values:
            values["from_"] = values.pop("from")
        request = cls(**values)
    payload: dict[str, Any] = request.payload()
    return payload


@dataclass
class ZvmClientConfig:
    """Where ghostd and walletd are (ZVM's test defaults), timeouts and TLS."""

    ghostd_endpoint: str = "127.0.0.1:50051"
    walletd_endpoint: str = "127.0.0.1:9090"
    timeout_ms: int = 30000
    ca_file: str | None = None
    verify_tls: bool = True
    server_name: str | None = None


class ContractEventStream:
    """``streamContractEvents``' result: ``await stream.next()`` (None once the
    stream ends or is closed), ``async for``, ``await stream.close()``; best used
    as ``async with client.streamContractEvents(address) as stream``."""

    def __init__(self, client: GrpcClient, contract: str, after: Any) -> None:
        self._client = client
        self._contract = contract
        self._after = after
        self._stack: AsyncExitStack | None = None
        self._subscription: rpc.Subscription | None = None
        self.last_cursor = after

    async def open(self) -> ContractEventStream:
        if self._stack is not None:
            return self
        stack = AsyncExitStack()
        try:
            conn = await stack.enter_async_context(self._client.connection())
            self._subscription = await stack.enter_async_context(
                conn.subscribe(
                    f"{GHOSTD_SERVICE}.contract_events",
                    (),
                    {"contract_address": self._contract},
                    after=self._after,
                )
            )
        except rpc.RpcError as exc:
            await stack.aclose()
            raise ZvmError("streamContractEvents", exc.status, exc.message) from None
        except BaseException:
            await stack.aclose()  # cancelled, or any other failure: the connection closes too
            raise
        self._stack = stack
        return self

    def __await__(self) -> Generator[Any, None, ContractEventStream]:
        return self.open().__await__()

    async def __aenter__(self) -> ContractEventStream:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def next(self) -> ContractEvent | None:
        if self._subscription is None:
            return None
        try:
            event = await self._subscription.receive()
        except rpc.RpcError as exc:
            if exc.status is rpc.Status.UNAVAILABLE:
                return None  # the connection closed (ZVM: null on ConnectionClosed)
            raise ZvmError("streamContractEvents", exc.status, exc.message) from None
        except trio.EndOfChannel:
            return None
        self.last_cursor = event.cursor
        return _build(ContractEvent, {**event.data, "cursor": event.cursor})

    def __aiter__(self) -> AsyncIterator[ContractEvent]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[ContractEvent]:
        while (event := await self.next()) is not None:
            yield event

    async def close(self) -> None:
        stack, self._stack, self._subscription = self._stack, None, None
        if stack is not None:
            await stack.aclose()


class ZvmClient:
    """ZVM's ``QuicClient`` operations; see the module docstring."""

    def __init__(
        self,
        config: ZvmClientConfig | None = None,
        *,
        quic_config: quic.ClientConfig | None = None,
    ) -> None:
        self.config = config if config is not None else ZvmClientConfig()
        cfg = self.config
        rpc_config = ClientConfig(
            timeout_ms=cfg.timeout_ms,
            ca_file=cfg.ca_file,
            verify_tls=cfg.verify_tls,
            server_name=cfg.server_name,
        )
        self.ghostd = GrpcClient(cfg.ghostd_endpoint, rpc_config, quic_config=quic_config)
        self.walletd = GrpcClient(cfg.walletd_endpoint, rpc_config, quic_config=quic_config)
        self._stack: AsyncExitStack | None = None

    @classmethod
    def init(cls, _allocator: Any, config: ZvmClientConfig | None = None) -> ZvmClient:
        return cls(config)

    async def connect(self) -> None:
        """Open the shared connections and health-check ghostd (as ZVM's ``connect``)."""
        if self._stack is not None:
            return
        stack = AsyncExitStack()
        try:
            await stack.enter_async_context(self.ghostd)
            if self.config.walletd_endpoint != self.config.ghostd_endpoint:
                await stack.enter_async_context(self.walletd)
            else:
                self.walletd = self.ghostd
            if not await self.healthCheck(ServiceEndpoint.ghostd):
                raise ZvmError("connect", rpc.Status.UNAVAILABLE, "ghostd is not healthy")
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack

    async def disconnect(self) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()

    async def __aenter__(self) -> ZvmClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.disconnect()

    deinit = disconnect

    async def _call(self, endpoint: GrpcClient, operation: str, method: str, **args: Any) -> Any:
        service = WALLETD_SERVICE if method in _WALLET else GHOSTD_SERVICE
        name = f"{service}.{method}"
        try:
            async with endpoint.connection() as conn:
                seconds = self.config.timeout_ms / 1000
                return await conn.call(name, (), args, timeout=seconds)
        except rpc.RpcError as exc:
            raise ZvmError(operation, exc.status, exc.message) from None

    # -- ghostd ------------------------------------------------------------------------

    async def deployContract(
        self, request: ContractDeployRequest | Mapping[str, Any] | None = None, **fields: Any
    ) -> ContractDeployResponse:
        payload = _request(ContractDeployRequest, request, fields)
        reply = await self._call(self.ghostd, "deployContract", "deploy_contract", **payload)
        return _build(ContractDeployResponse, reply)

    async def callContract(
        self, request: ContractCallRequest | Mapping[str, Any] | None = None, **fields: Any
    ) -> ContractCallResponse:
        payload = _request(ContractCallRequest, request, fields)
        reply = await self._call(self.ghostd, "callContract", "call_contract", **payload)
        return _build(ContractCallResponse, reply)

    async def submitTransaction(
        self, request: TransactionRequest | Mapping[str, Any] | None = None, **fields: Any
    ) -> TransactionResponse:
        payload = _request(TransactionRequest, request, fields)
        reply = await self._call(self.ghostd, "submitTransaction", "submit_transaction", **payload)
        return _build(TransactionResponse, reply)

    async def getBalance(self, address: str | bytes) -> int:
        reply = await self._call(
            self.ghostd, "getBalance", "get_balance", address=hex_address(address)
        )
        return int(reply["balance"])

    def streamContractEvents(self, address: str | bytes, after: Any = None) -> ContractEventStream:
        """The contract's events; ``after`` (an event's ``cursor``) resumes after it."""
        return ContractEventStream(self.ghostd, hex_address(address), after)

    # -- walletd -----------------------------------------------------------------------

    async def createWallet(self, name: str, account_type: str = "standard") -> Wallet:
        reply = await self._call(
            self.walletd,
            "createWallet",
            "create_wallet",
            name=name,
            account_type=account_type,
            use_zquic=True,
        )
        return _build(Wallet, reply["wallet"])

    async def signTransaction(self, wallet_id: str, data: str | bytes) -> str:
        """The signature (hex) of ``data`` by the wallet's key."""
        text = data.decode() if isinstance(data, bytes) else data
        reply = await self._call(
            self.walletd,
            "signTransaction",
            "sign_transaction",
            wallet_id=wallet_id,
            data=text,
            use_enhanced_crypto=True,
        )
        return str(reply["signature"])

    async def healthCheck(self, endpoint: ServiceEndpoint | str = ServiceEndpoint.ghostd) -> bool:
        """True when the daemon answers healthy; False when it cannot be reached."""
        which = ServiceEndpoint(endpoint)
        target = self.ghostd if which is ServiceEndpoint.ghostd else self.walletd
        service = GHOSTD_SERVICE if which is ServiceEndpoint.ghostd else WALLETD_SERVICE
        try:
            async with target.connection() as conn:
                seconds = self.config.timeout_ms / 1000
                reply = await conn.call(f"{service}.health_check", timeout=seconds)
        except rpc.RpcError:
            return False
        return isinstance(reply, dict) and reply.get("status") == "healthy"

    deploy_contract = deployContract
    call_contract = callContract
    submit_transaction = submitTransaction
    get_balance = getBalance
    stream_contract_events = streamContractEvents
    create_wallet = createWallet
    sign_transaction = signTransaction
    health_check = healthCheck


_WALLET = frozenset({"create_wallet", "sign_transaction"})

QuicClient = ZvmClient
"""ZVM's name for it."""

__all__ = [
    "ContractCallRequest",
    "ContractCallResponse",
    "ContractDeployRequest",
    "ContractDeployResponse",
    "ContractEvent",
    "ContractEventStream",
    "QuicClient",
    "ServiceEndpoint",
    "TransactionRequest",
    "TransactionResponse",
    "Wallet",
    "ZvmClient",
    "ZvmClientConfig",
    "ZvmError",
    "hex_address",
    "hex_bytes",
]
