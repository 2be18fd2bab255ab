"""Every relative link of the README and docs/ points at a file that exists,
and every #anchor at a heading of the file it names (GitHub's anchors).
The README stays a landing page that still shows the set-up and test
commands CI runs."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1")
# [text](target "title") and ![alt](target); the target may sit in <...>.
_INLINE_LINK = re.compile(
    r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*(<[^>]*>|[^)\s]+)(?:\s+[\"'(][^)]*)?\)"
)
_REFERENCE = re.compile(r"^ {0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)")
_HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)(?:\s+#+)?\s*$")
_HTML_ANCHOR = re.compile(r"<a\s+(?:name|id)=\"([^\"]+)\"", re.IGNORECASE)
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def prose_lines(text: str) -> list[str]:
    """The lines of ``text`` outside fenced code blocks, code spans blanked."""
    lines, fence = [], ""
    for line in text.splitlines():
        opening = _FENCE.match(line)
        if fence:
            if opening and opening.group(1)[0] == fence[0] and len(opening.group(1)) >= len(fence):
                fence = ""
            continue
        if opening:
            fence = opening.group(1)
            continue
        lines.append(line)
    return lines


def links(text: str) -> list[str]:
    """Every link target of ``text``, outside code."""
    found = []
    for line in prose_lines(text):
        line = _CODE_SPAN.sub(lambda span: " " * len(span.group(0)), line)
        found += _INLINE_LINK.findall(line)
        found += _REFERENCE.findall(line)
    return [target.strip("<>") for target in found]


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: its text (code marks and link targets
    gone) lower-cased, punctuation dropped, each space a hyphen."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = text.replace("`", "").lower()
    kept = []
    for char in text:
        if char == " ":
            kept.append("-")
        elif char in "-_" or unicodedata.category(char)[0] in "LNM":
            kept.append(char)
    return "".join(kept)


def anchors(text: str) -> set[str]:
    """The anchors of a markdown text: one per heading (a repeated heading
    gets -1, -2, ...), plus explicit HTML anchors."""
    seen: dict[str, int] = {}
    result = set()
    for line in prose_lines(text):
        heading = _HEADING.match(line)
        if heading:
            base = slug(heading.group(2))
            count = seen.get(base, 0)
            seen[base] = count + 1
            result.add(base if count == 0 else f"{base}-{count}")
        result.update(_HTML_ANCHOR.findall(line))
    return result


def broken_links(document: Path, root: Path = ROOT) -> list[str]:
    """What is wrong with the relative links of ``document``, one sentence each."""
    problems = []
    for target in links(document.read_text(encoding="utf-8")):
        if _SCHEME.match(target):
            continue  # http:, https:, mailto: are not checked here
        path_part, _, anchor = target.partition("#")
        path = (document.parent / unquote(path_part)).resolve() if path_part else document
        if not path.is_relative_to(root):
            problems.append(f"{target}: outside the repository")
        elif not path.exists():
            problems.append(f"{target}: no such file")
        elif anchor:
            if path.suffix != ".md":
                continue  # a line anchor of source code; the file exists
            if unquote(anchor) not in anchors(path.read_text(encoding="utf-8")):
                problems.append(f"{target}: no heading with that anchor in {path.name}")
    return problems


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: str(path.relative_to(ROOT)))
def test_relative_links_resolve(document: Path) -> None:
    problems = broken_links(document)
    assert not problems, f"{document.relative_to(ROOT)}: " + "; ".join(problems)


def test_the_check_finds_broken_links(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "other.md").write_text(
        "# Other page\n\n## The `ormcache-redis` command\n\n## Repeated\n\n## Repeated\n"
    )
    page = tmp_path / "docs" / "page.md"
    page.write_text(
        "# Page\n\n"
        "[ok](other.md) [ok](other.md#the-ormcache-redis-command) [ok](#page)\n"
        "[ok](other.md#repeated-1) [ok](https://example.org/missing.md)\n"
        "[missing file](gone.md) [missing anchor](other.md#nowhere)\n"
        "![missing image](images/none.png) [outside](../../elsewhere.md)\n"
        "`[in code](gone-too.md)`\n\n"
        "```\n[in a block](gone-three.md)\n```\n\n"
        "[ref]: missing-ref.md\n"
    )
    assert broken_links(page, tmp_path) == [
        "gone.md: no such file",
        "other.md#nowhere: no heading with that anchor in other.md",
        "images/none.png: no such file",
        "../../elsewhere.md: outside the repository",
        "missing-ref.md: no such file",
    ]


def test_slugs_follow_github() -> None:
    assert slug("Inside Odoo: the `@ormcache` hit") == "inside-odoo-the-ormcache-hit"
    assert slug("Is it active?") == "is-it-active"
    assert slug("Sentinel and Redis Cluster") == "sentinel-and-redis-cluster"
    assert slug("The engine against its baselines: `make bench`") == (
        "the-engine-against-its-baselines-make-bench"
    )
    assert slug("max_depth and [links](x.md)") == "max_depth-and-links"


def test_readme_is_a_landing_page_with_the_ci_commands() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 250
    # .ci/run runs the README's set-up and test commands.
    commands = [line.split("#")[0].strip() for line in readme.splitlines()]
    assert "make install" in commands and "make test" in commands
