"""The documentation as the tests read it: README.md and every page under docs/.

Markdown is read the way GitHub renders it as far as these tests need: fenced code blocks are
commands, not prose (a `# comment` in one is no heading, a `[x](y)` in one no link), and an
inline code span is literal text.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
CONFIGURATION = DOCS / "configuration.md"

FENCE = re.compile(r"^ *```.*?^ *```[^\n]*$", re.M | re.S)
CODE_SPAN = re.compile(r"`[^`]*`")


def pages() -> list[Path]:
    """README.md first, then the pages under docs/ by name."""
    return [README, *sorted(DOCS.glob("*.md"))]


def name(page: Path) -> str:
    return str(page.relative_to(ROOT))


def code_blocks(text: str) -> list[str]:
    """The fenced blocks of a page, fences included."""
    return FENCE.findall(text)


def without_code_blocks(text: str) -> str:
    return FENCE.sub("", text)


def prose(text: str) -> str:
    """The page without its fenced blocks, and with every code span reduced to `code`."""
    return CODE_SPAN.sub("`code`", without_code_blocks(text))
