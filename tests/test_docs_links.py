"""Every relative link in README.md and docs/*.md resolves.

A link ``[text](target)`` (or an image, or a ``[label]: target`` reference
definition) whose target is not a URL with a scheme must name a file or
folder of the repository, relative to the document; a ``#fragment`` must be
a heading of the target Markdown file (GitHub's anchors: lower case,
punctuation dropped, spaces to hyphens, ``-1``, ``-2``... for repeats) or an
explicit ``<a id="...">``. Links inside code (fenced blocks, inline code
spans) are not links and are skipped.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
INLINE = re.compile(r"!?\[(?:[^\]\\]|\\.)*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$")
FENCE = re.compile(r"^\s{0,3}(`{3,}|~{3,})")
HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$")
EXPLICIT_ANCHOR = re.compile(r"<a\s+(?:id|name)=\"([^\"]+)\"")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def prose_lines(text: str) -> list[tuple[int, str]]:
    """The lines outside fenced code blocks, numbered from 1, with inline code removed."""
    out: list[tuple[int, str]] = []
    fence: str | None = None
    for number, line in enumerate(text.splitlines(), 1):
        opening = FENCE.match(line)
        if fence is None and opening:
            fence = opening[1]
            continue
        if fence is not None:
            if line.strip().startswith(fence):
                fence = None
            continue
        out.append((number, re.sub(r"(`+).*?\1", "", line)))
    return out


def links(text: str) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for number, line in prose_lines(text):
        found.extend((number, match[1]) for match in INLINE.finditer(line))
        reference = REFERENCE.match(line)
        if reference:
            found.append((number, reference[1]))
    return found


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link: its text
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


@cache
def anchors(path: Path) -> frozenset[str]:
    """Every anchor a Markdown file defines."""
    text = path.read_text(encoding="utf-8")
    seen: dict[str, int] = {}
    out: set[str] = set(EXPLICIT_ANCHOR.findall(text))
    for _, line in _lines_keeping_code_spans(text):
        heading = HEADING.match(line)
        if not heading:
            continue
        anchor = github_anchor(heading[1])
        count = seen.get(anchor, 0)
        seen[anchor] = count + 1
        out.add(anchor if count == 0 else f"{anchor}-{count}")
    return frozenset(out)


def _lines_keeping_code_spans(text: str) -> list[tuple[int, str]]:
    # Headings keep their inline code (`quic.ClientConfig` is part of the anchor).
    numbered = dict(enumerate(text.splitlines(), 1))
    return [(number, numbered[number]) for number, _ in prose_lines(text)]


def check_link(document: Path, target: str) -> str | None:
    """Why ``target`` (a link in ``document``) does not resolve, or None."""
    if SCHEME.match(target) or target.startswith("//"):
        return None  # a URL: not checked here (no network in tests)
    path_part, _, fragment = target.partition("#")
    resolved = (document.parent / unquote(path_part)).resolve() if path_part else document
    if not resolved.is_relative_to(ROOT):
        return f"{target} points outside the repository"
    if not resolved.exists():
        return f"{target}: no such file or folder"
    if fragment:
        if resolved.suffix != ".md" or resolved.is_dir():
            return f"{target}: a fragment on a file that is not Markdown"
        if unquote(fragment) not in anchors(resolved):
            return f"{target}: no heading with anchor #{fragment} in {resolved.name}"
    return None


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: str(path.relative_to(ROOT)))
def test_relative_links_resolve(document: Path) -> None:
    text = document.read_text(encoding="utf-8")
    broken = [
        f"{document.relative_to(ROOT)}:{number}: {problem}"
        for number, target in links(text)
        if (problem := check_link(document, target)) is not None
    ]
    assert not broken, "\n".join(broken)


def test_the_readme_links_to_the_docs() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    targets = {target.partition("#")[0] for _, target in links(text)}
    for doc in [
        "docs/architecture.md",
        "docs/protocol.md",
        "docs/rpc-client.md",
        "docs/migrating-from-shroud.md",
        "docs/configuration.md",
        "docs/security.md",
        "bench/README.md",
        "bench/RESULTS.md",
    ]:
        assert doc in targets, f"README.md does not link to {doc}"


def test_the_checker_finds_broken_links() -> None:
    """The checker itself: broken files and anchors are reported, code is skipped."""
    assert github_anchor("`quic.ClientConfig`") == "quicclientconfig"
    assert github_anchor("HTTP/3: the `h3.serve` call") == "http3-the-h3serve-call"
    text = "# Top\n\n## Top\n\n[a](#top-1) `[b](nowhere.md)`\n"
    text += "```\n[c](gone.md)\n```\n[d](gone.md)\n"
    assert [target for _, target in links(text)] == ["#top-1", "gone.md"]
    doc = ROOT / "docs" / "security.md"
    assert check_link(doc, "configuration.md#quic") is None
    assert check_link(doc, "configuration.md#no-such-heading") is not None
    assert check_link(doc, "no-such-file.md") is not None
    assert check_link(doc, "https://example.invalid/") is None
