"""The README's snippets run as written.

Every fenced ```` ```python ```` block of the documents in :data:`DOCUMENTS`
is a complete program: the test writes it to a file in an empty temporary
folder and runs it there in a subprocess, with ``ghostwire`` importable,
bounded by :data:`TIME_LIMIT`. It must exit with status 0 and print no
traceback. A snippet that needs a server starts one itself in the same
program (an echo server and its client in one ``trio.run``).

Markers: an HTML comment on the line just before a block changes how it is
checked, ``<!-- readme-test: WORD WORD ... (free text) -->``:

* ``certs``: the folder holds ``ca.pem`` (a test CA), and ``cert.pem`` with
  ``key.pem`` (a server certificate from that CA for localhost, 127.0.0.1
  and ::1), for snippets that read certificates from files;
* ``serves``: the snippet serves until Ctrl-C: it must print a line and keep
  running; the test then stops it (its Ctrl-C behaviour is not checked);
* ``skip``: not run (say why in the free text).

``sh`` blocks: each command line that runs ``ghostwire`` (``ghostwire ...``,
``.venv/bin/ghostwire ...``, ``python -m ghostwire ...``) must parse with the
real argument parser, and ``ghostwire demo`` really runs. The set-up blocks
that CI reads (``<!-- demo-command -->``, ``<!-- test-command -->``) must be
there, each followed by one ``sh`` block. Other ``sh`` lines (pip, pytest,
the linters) are not run here.

The extraction is general: a new section's snippets are picked up and run
with no change here.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trio

from ghostwire.__main__ import build_parser
from ghostwire.certs import CertificateAuthority

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = ["README.md"]
TIME_LIMIT = 60  # seconds per snippet; each takes a second or two
MARKER = re.compile(r"<!--\s*readme-test:\s*(?P<words>[\w\s-]*?)\s*(\(.*\))?\s*-->")
KNOWN_WORDS = {"certs", "serves", "skip"}


@dataclass
class Block:
    """One fenced code block of a document."""

    document: str
    line: int  # of the opening fence, counting from 1
    language: str
    code: str
    markers: set[str] = field(default_factory=set)
    comment: str = ""  # the HTML comment on the line before, if any

    @property
    def id(self) -> str:
        return f"{self.document}:{self.line}"


def extract_blocks(document: str) -> list[Block]:
    """Every fenced block (```` ```lang ````...```` ``` ````) of a Markdown file."""
    lines = (ROOT / document).read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    index = 0
    while index < len(lines):
        opening = re.match(r"^(`{3,})\s*([\w+-]*)", lines[index])
        if not opening:
            index += 1
            continue
        fence, language = opening[1], opening[2].lower()
        end = index + 1
        while end < len(lines) and not lines[end].startswith(fence):
            end += 1
        previous = lines[index - 1].strip() if index else ""
        comment = previous if previous.startswith("<!--") else ""
        block = Block(document, index + 1, language, "\n".join(lines[index + 1 : end]) + "\n")
        block.comment = comment
        marker = MARKER.search(comment)
        if marker:
            block.markers = set(marker["words"].split())
        blocks.append(block)
        index = end + 1
    return blocks


ALL_BLOCKS = [block for document in DOCUMENTS for block in extract_blocks(document)]
PYTHON_BLOCKS = [block for block in ALL_BLOCKS if block.language in ("python", "py")]
SH_BLOCKS = [block for block in ALL_BLOCKS if block.language in ("sh", "bash", "shell", "console")]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def _write_certificates(folder: Path) -> None:
    ca = CertificateAuthority.create("readme test CA")
    ca.write_pem(folder / "ca.pem")
    ca.issue(["localhost", "127.0.0.1", "::1"]).write_pem(folder / "cert.pem", folder / "key.pem")


def test_the_readme_has_snippets_and_known_markers() -> None:
    assert PYTHON_BLOCKS, "no python snippets found: is the extractor broken?"
    for block in ALL_BLOCKS:
        assert block.markers <= KNOWN_WORDS, f"{block.id}: unknown marker {block.comment!r}"
        if "readme-test" in block.comment:
            assert block.markers, f"{block.id}: a readme-test marker with no word"


@pytest.mark.parametrize("block", PYTHON_BLOCKS, ids=lambda block: block.id)
async def test_python_snippet_runs_as_written(block: Block, tmp_path: Path) -> None:
    if "skip" in block.markers:
        pytest.skip(f"marked: {block.comment}")
    program = tmp_path / "snippet.py"
    await trio.Path(program).write_text(block.code)
    if "certs" in block.markers:
        await trio.to_thread.run_sync(_write_certificates, tmp_path)
    command = [sys.executable, str(program)]
    if "serves" in block.markers:
        await _check_serves(block, command, tmp_path)
        return
    with trio.fail_after(TIME_LIMIT):
        result = await trio.run_process(
            command,
            cwd=tmp_path,
            env=_env(),
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    err = result.stderr.decode(errors="replace")
    assert result.returncode == 0, f"{block.id} failed:\n{err}"
    assert "Traceback" not in err, err


async def _check_serves(block: Block, command: list[str], folder: Path) -> None:
    with trio.fail_after(TIME_LIMIT):
        process = await trio.lowlevel.open_process(
            command, cwd=folder, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        try:
            assert process.stdout is not None
            printed = b""
            while b"\n" not in printed:
                chunk = await process.stdout.receive_some()
                if not chunk:
                    break
                printed += chunk
            assert printed.strip(), f"{block.id} printed nothing"
            assert process.poll() is None, f"{block.id} exited instead of serving"
        finally:
            if process.returncode is None:
                process.kill()
            await process.wait()


def _ghostwire_commands(block: Block) -> list[list[str]]:
    """The ``ghostwire`` invocations in an sh block, as argument lists (after the program)."""
    commands = []
    for raw in block.code.splitlines():
        line = raw.split(" #", 1)[0].strip()
        for part in line.split("&&"):
            try:
                words = shlex.split(part)
            except ValueError:
                continue
            for start, word in enumerate(words):
                if word == "ghostwire" or word.endswith("/ghostwire"):
                    commands.append(words[start + 1 :])
                    break
                if word == "-m" and words[start + 1 : start + 2] == ["ghostwire"]:
                    commands.append(words[start + 2 :])
                    break
    return commands


SH_COMMANDS = [
    (block, argv)
    for block in SH_BLOCKS
    if "skip" not in block.markers
    for argv in _ghostwire_commands(block)
]


def test_the_readme_shows_ghostwire_commands() -> None:
    assert SH_COMMANDS, "no ghostwire command lines found: is the extractor broken?"


@pytest.mark.parametrize(
    ("block", "argv"), SH_COMMANDS, ids=[f"{b.id}:{' '.join(a)[:40]}" for b, a in SH_COMMANDS]
)
def test_ghostwire_command_lines_parse(block: Block, argv: list[str]) -> None:
    try:
        build_parser().parse_args(argv)
    except SystemExit as exc:
        pytest.fail(f"{block.id}: 'ghostwire {shlex.join(argv)}' does not parse (exit {exc})")


@pytest.mark.parametrize("marker", ["demo-command", "test-command"])
def test_ci_setup_commands_are_there(marker: str) -> None:
    found = [block for block in ALL_BLOCKS if block.comment == f"<!-- {marker} -->"]
    assert len(found) == 1, f"README.md needs exactly one <!-- {marker} --> block"
    (block,) = found
    assert block.language == "sh"
    assert len(block.code.strip().splitlines()) == 1  # .ci/run reads one line


async def test_the_demo_command_runs(tmp_path: Path) -> None:
    (demo,) = [block for block in ALL_BLOCKS if block.comment == "<!-- demo-command -->"]
    assert ["demo"] in _ghostwire_commands(demo)
    with trio.fail_after(TIME_LIMIT):
        result = await trio.run_process(
            [sys.executable, "-m", "ghostwire", "demo"],
            cwd=tmp_path,
            env=_env(),
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    assert result.returncode == 0, result.stderr
    assert b"call latency : p50 " in result.stdout
    assert list(await trio.Path(tmp_path).iterdir()) == []  # nothing left behind
