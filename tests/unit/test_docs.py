"""The README and the pages under docs/ hold together: every relative link and #anchor resolves
as GitHub renders them, every page is reachable from the README, and the README stays short
enough for a newcomer to read to the end."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from tests.unit.pages import DOCS, README, name, pages, prose, without_code_blocks

# The issue that split the README: what a newcomer's first hour needs fits in this; the rest
# belongs on a page under docs/.
README_MAX_LINES = 250

# Written by the runs that measure (bench/report.py, tests/faults/reliability.py,
# compare/report.py): they open with what was run, not with who needs them.
GENERATED = {"benchmarks.md", "reliability.md", "http-vs-broker.md"}

LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$", re.M)
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.I)


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: its text, lower case, without punctuation, each space
    a hyphen (github-slugger, which GitHub's renderer follows)."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every heading's anchor (a `#` line in a code block is no heading); a repeated heading
    gets -1, -2, ... as on GitHub."""
    seen: Counter[str] = Counter()
    found = set()
    for _, heading in HEADING.findall(without_code_blocks(text)):
        slug = github_slug(heading)
        found.add(f"{slug}-{seen[slug]}" if seen[slug] else slug)
        seen[slug] += 1
    return found


def relative_links(page: Path) -> list[str]:
    """The targets of the page's links and images that point into this repository."""
    return [
        target for target in LINK.findall(prose(page.read_text())) if not EXTERNAL.match(target)
    ]


def broken_links(page: Path) -> list[str]:
    """Each relative link of the page whose file is missing, or whose #anchor no heading of
    that file gives, with the reason."""
    broken = []
    for target in relative_links(page):
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked.read_text()):
            broken.append(f"{target}: no heading gives #{anchor}")
    return broken


@pytest.mark.parametrize("page", pages(), ids=name)
def test_every_relative_link_and_anchor_resolves(page: Path) -> None:
    broken = broken_links(page)
    assert not broken, f"{name(page)}: " + "; ".join(broken)


def test_a_broken_link_or_anchor_is_caught(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# Other page\n\n## What `last` keeps, and where\n")
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n\n## Seen twice\n\n## Seen twice\n\n"
        "[fine](other.md#what-last-keeps-and-where) [fine](#seen-twice-1) [web](https://x.org/y)\n"
        "`[not a link](nowhere.md)`\n\n```sh\n# not a heading [nor a link](gone.md)\n```\n"
        "[gone](missing.md) [wrong anchor](other.md#what-last-keeps) [here](#nowhere)\n"
    )
    assert broken_links(page) == [
        "missing.md: no such file",
        "other.md#what-last-keeps: no heading gives #what-last-keeps",
        "#nowhere: no heading gives #nowhere",
    ]


@pytest.mark.parametrize(
    ("heading", "slug"),
    [
        ("HTTP between services, side by side", "http-between-services-side-by-side"),
        ("What `last` keeps, and where", "what-last-keeps-and-where"),
        ("The queues: `make watch`", "the-queues-make-watch"),
        (
            "What replication costs: three nodes against one",
            "what-replication-costs-three-nodes-against-one",
        ),
        ("Seeing the flow — and [more](x.md)", "seeing-the-flow--and-more"),
        ("service_b and KEYS", "service_b-and-keys"),
    ],
)
def test_anchors_are_made_as_github_makes_them(heading: str, slug: str) -> None:
    assert github_slug(heading) == slug


def test_every_page_is_reachable_from_the_readme() -> None:
    reached, todo = {README}, [README]
    while todo:
        page = todo.pop()
        for target in relative_links(page):
            linked = (page.parent / target.partition("#")[0]).resolve()
            if linked.suffix == ".md" and linked.is_file() and linked not in reached:
                reached.add(linked)
                todo.append(linked)
    unreached = sorted(name(page) for page in pages() if page not in reached)
    assert unreached == [], "no link leads to these from README.md"


def test_the_readme_is_short_enough_to_read_to_the_end() -> None:
    lines = len(README.read_text().splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move detail to docs/"


@pytest.mark.parametrize(
    "page", [page for page in sorted(DOCS.glob("*.md")) if page.name not in GENERATED], ids=name
)
def test_every_hand_written_page_says_first_who_needs_it(page: Path) -> None:
    title, _, rest = page.read_text().partition("\n\n")
    assert title.startswith("# "), f"{name(page)} starts with its title"
    assert rest.startswith("For "), f"{name(page)}: the first paragraph says who needs the page"
