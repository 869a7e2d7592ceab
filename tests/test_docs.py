"""The docs stay true to the code: generated parts are current, links lead somewhere."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sse_hub import config_reference
from sse_hub.config import SERVE_OPTIONS
from tests import docs_layout
from tests.test_layers import LAYERS, MODULES

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted([ROOT / "README.md", ROOT / "bench" / "README.md", *DOCS.rglob("*.md")])
# Pages of concepts and tasks; the index and the benchmark records name no modules.
TOPIC_PAGES = sorted(
    path for path in DOCS.glob("*.md") if path.name not in {"README.md", "benchmarks.md"}
)

_FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
_LINK = re.compile(r"\[(?:[^\[\]]|\[[^\]]*\])*\]\(([^)\s]+)\)")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)


def _prose(path: Path) -> str:
    """The page without its fenced code blocks (whose brackets are not links)."""
    return _FENCE.sub("", path.read_text(encoding="utf-8"))


def _anchors(path: Path) -> set[str]:
    """GitHub's heading ids: lower case, punctuation dropped, spaces to hyphens, -1 for repeats."""
    seen: dict[str, int] = {}
    anchors: set[str] = set()
    for heading in _HEADING.findall(_prose(path)):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def _relative_links(path: Path) -> list[str]:
    return [
        target
        for target in _LINK.findall(_prose(path))
        if not re.match(r"[a-z][a-z0-9+.-]*:", target)  # http:, https:, mailto:
    ]


def _stale(path: Path, rendered: str, source: str) -> bool:
    current = path.read_text(encoding="utf-8")
    return config_reference.splice(current, rendered, source) != current


def test_configuration_reference_is_generated_from_the_options_table() -> None:
    path = DOCS / "configuration.md"
    assert not _stale(path, config_reference.render(), config_reference.SOURCE), (
        "docs/configuration.md does not match sse_hub/config.py: run `make docs`"
    )


def test_configuration_reference_lists_every_option_once() -> None:
    table = config_reference.render()
    for option in SERVE_OPTIONS:
        assert table.count(f"| `{option.flag}") == 1, option.flag
        assert f"`{option.env}`" in table, option.env


def test_configuration_reference_defaults_carry_their_units() -> None:
    by_flag = {option.flag: option for option in SERVE_OPTIONS}
    assert config_reference.default_text(by_flag["--heartbeat"]) == "`15` s"
    assert config_reference.default_text(by_flag["--retry-ms"]) == "`3000` ms"
    assert config_reference.default_text(by_flag["--retention"]) == "`24h`"
    assert config_reference.default_text(by_flag["--max-data"]) == "`262144` bytes (256 KiB)"
    assert config_reference.default_text(by_flag["--max-batch"]) == "`1000` events"
    assert config_reference.default_text(by_flag["--rate-publish"]) == "`50:500`"
    assert config_reference.default_text(by_flag["--dsn"]) == "none"
    assert config_reference.default_text(by_flag["--insecure-no-auth"]) == "off"


def test_splice_needs_both_markers() -> None:
    with pytest.raises(ValueError, match="BEGIN generated"):
        config_reference.splice("no markers here\n", "| table |", config_reference.SOURCE)


def test_layout_is_generated_from_the_layer_map() -> None:
    path = DOCS / "development.md"
    assert not _stale(path, docs_layout.render(), docs_layout.SOURCE), (
        "docs/development.md's layout does not match tests/test_layers.py and the "
        "modules' docstrings: run `make docs`"
    )


def test_layout_names_every_module_once_with_its_layer() -> None:
    rows = re.findall(
        r"^\| \[`(\w+)`\]\(\.\./sse_hub/\w+\.py\) \| (\w+) \|", docs_layout.render(), re.M
    )
    assert sorted(module for module, _ in rows) == MODULES
    layers = {module: layer for layer, modules, _ in LAYERS for module in modules}
    assert all(layers[module] == layer for module, layer in rows)


def _broken_links(page: Path) -> list[str]:
    broken = []
    for target in _relative_links(page):
        file_part, _, anchor = target.partition("#")
        linked = (page.parent / file_part).resolve() if file_part else page
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in _anchors(linked):
            broken.append(f"{target}: no heading #{anchor} in {linked.name}")
    return broken


@pytest.mark.parametrize("page", PAGES, ids=lambda path: str(path.relative_to(ROOT)))
def test_relative_links_lead_to_files_and_headings(page: Path) -> None:
    broken = _broken_links(page)
    assert not broken, f"{page.relative_to(ROOT)}: " + "; ".join(broken)


def test_the_link_check_sees_missing_files_and_headings(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# Other page\n\n## Ranges and `Range:` headers\n")
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n\n[ok](other.md) [ok](other.md#ranges-and-range-headers) [ok](#page)\n"
        "[`code` text](other.md#other-page) [web](https://example.com/x.md)\n"
        "[gone](missing.md) [no heading](other.md#nowhere) [here](#nothing)\n\n"
        "```\n[not a link](inside-a-fence.md)\n```\n"
    )
    assert _broken_links(page) == [
        "missing.md: no such file",
        "other.md#nowhere: no heading #nowhere in other.md",
        "#nothing: no heading #nothing in page.md",
    ]


@pytest.mark.parametrize("page", TOPIC_PAGES, ids=lambda path: path.name)
def test_topic_pages_say_what_they_cover_and_name_their_code(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    first_paragraph = text.split("\n\n")[1]
    assert first_paragraph.startswith("This page "), "start with what the page covers"
    assert re.search(r"^Code: .*\]\(\.\./", text, re.M), "name the modules that implement it"


@pytest.mark.parametrize("page", PAGES, ids=lambda path: str(path.relative_to(ROOT)))
def test_no_issue_numbers_in_user_docs(page: Path) -> None:
    assert not re.search(r"\bissues? #?\d", page.read_text(encoding="utf-8"), re.I)
