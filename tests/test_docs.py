"""The documentation pages: every internal link and anchor resolves, every page is reachable from
the README, and `make reliability` fills only the generated section of docs/reliability.md."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from load.report import BEGIN, DOC, END, fill, render

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PAGES = sorted([README, ROOT / "sandbox" / "README.md", *(ROOT / "docs").glob("*.md")])

_FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
_HEADING = re.compile(r"^(#{1,6}) +(.+?) *#*$", re.MULTILINE)


def _prose(text: str) -> str:
    """The text without fenced code blocks (whose `#` lines are no headings)."""
    return _FENCE.sub("", text)


def _slug(title: str) -> str:
    """GitHub's heading id: lower case, punctuation (backticks too) dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")


def _anchors(text: str) -> set[str]:
    """The heading ids of a page; a repeated heading gets -1, -2, ... as on GitHub."""
    seen: dict[str, int] = {}
    anchors = set()
    for _, title in _HEADING.findall(_prose(text)):
        slug = _slug(title)
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def _links(path: Path) -> list[str]:
    return _LINK.findall(_CODE.sub("", _prose(path.read_text(encoding="utf-8"))))


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_internal_link_and_anchor_resolves(page: Path) -> None:
    broken = []
    for target in _links(page):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto: ...
            continue
        file_part, _, anchor = target.partition("#")
        linked = (page.parent / file_part).resolve() if file_part else page
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in _anchors(linked.read_text(encoding="utf-8")):
            broken.append(f"{target}: no heading #{anchor} in {linked.relative_to(ROOT)}")
    assert not broken, f"{page.relative_to(ROOT)}: " + "; ".join(broken)


def test_every_page_is_linked_from_the_readme() -> None:
    linked = {(ROOT / target.partition("#")[0]).resolve() for target in _links(README)}
    missing = [str(p.relative_to(ROOT)) for p in PAGES if p != README and p.resolve() not in linked]
    assert not missing, f"not linked from README.md: {missing}"


def test_reliability_figures_replace_only_their_section() -> None:
    page = f"# Reliability\n\nprose\n\n{BEGIN}\nold figures\n{END}\n\nmore prose\n"
    expected = f"# Reliability\n\nprose\n\n{BEGIN}\n\nnew figures\n\n{END}\n\nmore prose\n"
    assert fill(page, "new figures\n") == expected
    with pytest.raises(ValueError):
        fill("# Reliability\n\nno markers\n", "new figures")


def test_the_reliability_page_keeps_its_generated_section() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert text.count(BEGIN) == 1 and text.count(END) == 1
    section = text.split(BEGIN + "\n", 1)[1].split(END, 1)[0]
    assert fill(text, section) == text  # rendering the same figures again changes nothing
    case = {
        "case": "healthy",
        "requests": 1,
        "events": 2,
        "statuses": {"200": 1},
        "lost": 0,
        "duplicate_rows": 0,
        "resent_rows": 0,
        "sent_after_ack": 0,
        "smc_calls": 1,
        "seconds": 0.1,
    }
    figures = render({"faults": {"healthy": case}, "fuzz": {"a property": 3}, "written_at": "now"}, None)
    rendered = fill(text, figures)
    assert rendered.split(BEGIN)[0] == text.split(BEGIN)[0]  # the prose before it is kept
    assert {"figures-from-real-runs", "fault-cases"} <= _anchors(figures)  # linked from the prose
