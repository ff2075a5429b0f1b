"""A user's trio program Ctrl-C'd while an RPC client runs ends with
KeyboardInterrupt alone (the client's background tasks are KI-protected).

Raised in a supervisor's task, the KeyboardInterrupt ended that endpoint,
and the call in flight failed with NoEndpointAvailable beside it. Now it
reaches the main task (in the groups of the program's own nurseries, as
any exception does there). ``signal.raise_signal`` runs the Python-level
handler before it returns, inside the supervisor's task: deterministic."""

from __future__ import annotations

import signal
import sys
from typing import Any

import pytest
import trio
from test_rpc_support import connected

import ghostwire.rpc as rpc
from ghostwire.rpc.links import Links

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def _service() -> rpc.Service:
    service = rpc.Service("probe")

    @service.call
    async def echo(ctx: rpc.Context, value: Any) -> Any:
        return value

    return service


def test_ctrl_c_in_an_rpc_supervisor_task_is_a_keyboard_interrupt(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fired: list[str] = []
    add = Links.add

    def ctrl_c_in_the_supervisor(self: Links, link: Any) -> None:
        task = trio.lowlevel.current_task().name
        if not fired:
            fired.append(task)
            signal.raise_signal(signal.SIGINT)  # while the supervisor's task runs
        add(self, link)

    monkeypatch.setattr(Links, "add", ctrl_c_in_the_supervisor)

    async def program() -> None:
        async with connected([_service()]) as (_, client):
            await client.call("probe.echo", value=1)
            await trio.sleep_forever()

    with pytest.raises(BaseException) as raised:
        trio.run(program)
    assert fired and "supervisor" in fired[0], fired
    error = raised.value
    if isinstance(error, BaseExceptionGroup):
        interrupts, others = error.split(KeyboardInterrupt)
        assert interrupts is not None and others is None, repr(error)
    else:
        assert type(error) is KeyboardInterrupt, repr(error)
