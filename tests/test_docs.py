"""The documentation's relative links lead somewhere, and the README stays a front door.

Files move (the layout changed once already); a link that still names the old place fails here instead
of in a reader's browser.
"""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README_MAX_LINES = 220
# [text](target) and ![alt](target); the target ends at whitespace (an optional "title" may follow) or ")"
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.DOTALL | re.MULTILINE)
EXTERNAL = ("http://", "https://", "mailto:")


def documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "benchmarks" / "README.md"]


def relative_links(text: str) -> list[str]:
    """The link targets of a markdown text that name a file or folder: no URLs, no pure #anchors, no #fragment.

    Code blocks are skipped: `[x](y)` there is code, not a link.
    """
    targets = []
    for target in LINK.findall(FENCE.sub("", text)):
        if target.startswith(EXTERNAL) or target.startswith("#"):
            continue
        targets.append(target.split("#", 1)[0])
    return targets


def broken_links(path: Path) -> list[str]:
    return [target for target in relative_links(path.read_text()) if not (path.parent / target).exists()]


@pytest.mark.parametrize("path", documents(), ids=lambda path: str(path.relative_to(ROOT)))
def test_every_relative_link_points_at_a_file_or_folder(path):
    assert path.is_file()
    assert broken_links(path) == []


def test_the_readme_is_short():
    lines = len((ROOT / "README.md").read_text().splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move reference material to docs/"


def test_links_are_read_as_a_reader_follows_them(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "here.md").write_text("x")
    page = tmp_path / "page.md"
    page.write_text(
        "[a](docs/here.md#part) ![b](docs/) [c](https://example.org/x.md) [d](#top) [e](mailto:x@y.z)\n"
        '[f](docs/gone.md "title") [g](<docs/here.md>)\n'
        "```\n[h](not/a/link.md)\n```\n"
    )
    assert relative_links(page.read_text()) == ["docs/here.md", "docs/", "docs/gone.md", "docs/here.md"]
    assert broken_links(page) == ["docs/gone.md"]
