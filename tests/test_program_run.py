"""ghostwire.program.run: Ctrl-C cancels the program, then KeyboardInterrupt.

The signal is raised from inside a task, deterministically:
``signal.raise_signal`` runs the Python-level handler before it returns.
"""

from __future__ import annotations

import signal
import sys

import pytest
import trio

import ghostwire.program

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def test_returns_what_main_returns() -> None:
    async def main(x: int, y: int) -> int:
        await trio.lowlevel.checkpoint()
        return x + y

    assert ghostwire.program.run(main, 2, 3) == 5


def test_ctrl_c_in_a_background_task_cancels_every_task_then_raises() -> None:
    unwound: list[str] = []

    async def main() -> None:
        async with trio.open_nursery() as nursery:

            async def background() -> None:
                try:
                    signal.raise_signal(signal.SIGINT)  # Ctrl-C while this task runs
                    unwound.append("no KeyboardInterrupt here")
                    await trio.sleep_forever()
                finally:
                    unwound.append("background")

            nursery.start_soon(background)
            try:
                await trio.sleep_forever()
            finally:
                unwound.append("main")

    with pytest.raises(KeyboardInterrupt) as raised:
        ghostwire.program.run(main)
    assert sorted(unwound) == ["background", "main", "no KeyboardInterrupt here"]
    assert raised.value.__cause__ is None  # nothing but the cancellation was met


def test_an_error_met_while_cut_off_is_the_interruptions_cause() -> None:
    async def main() -> None:
        try:
            signal.raise_signal(signal.SIGINT)
            await trio.sleep_forever()
        except trio.Cancelled:
            raise ConnectionError("closed while cut off") from None

    with pytest.raises(KeyboardInterrupt) as raised:
        ghostwire.program.run(main)
    assert isinstance(raised.value.__cause__, ConnectionError)


def test_an_error_without_ctrl_c_is_raised_as_is() -> None:
    async def main() -> None:
        await trio.lowlevel.checkpoint()
        raise ValueError("bad input")

    with pytest.raises(ValueError, match="bad input"):
        ghostwire.program.run(main)
