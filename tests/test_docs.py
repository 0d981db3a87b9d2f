"""The settings tables of ``docs/settings.md`` are the settings the code has: every field of
``FloodwallSettings`` once, with the default the code gives it, and the demo's own variable.

The rule-book table of the same page is checked against ``floodwall.core.rules`` in
``tests/test_rules.py``; the Python examples of every page pass mypy in
``tests/test_readme.py``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from floodwall import Floodwall, FloodwallSettings
from floodwall.demo import POOL_VARIABLE, demo_pool_size
from floodwall.settings.variables import OTHER_VARIABLES, PREFIX

# A default cell starts with the default: `unset`, or the value in backticks as the
# environment would spell it; an explanation may follow.
_DEFAULT = re.compile(r"unset\b|`([^`]*)`")


def _tables(project_root: Path) -> list[dict[str, tuple[str, str]]]:
    """Each table of the settings section (before the rule book): variable → (meaning,
    default), in the order of its rows."""
    text = (project_root / "docs" / "settings.md").read_text("utf-8")
    section = text.split("\n## The rule book\n", 1)[0]
    tables: list[dict[str, tuple[str, str]]] = []
    for block in re.split(r"\n\s*\n", section):
        lines = [line for line in block.splitlines() if line.startswith("|")]
        if not lines:
            continue
        assert lines[0] == "| variable | meaning | default |", lines[0]
        rows: dict[str, tuple[str, str]] = {}
        for line in lines[2:]:
            cells = [cell.strip() for cell in line.strip().strip("|").split(" | ")]
            assert len(cells) == 3, line
            variable, meaning, default = cells
            assert re.fullmatch(r"`FLOODWALL_[A-Z_]+`", variable), line
            assert variable.strip("`") not in rows, f"{variable} is listed twice"
            rows[variable.strip("`")] = (meaning, default)
        tables.append(rows)
    return tables


def _shown(cell: str) -> str | None:
    """The default a cell shows; ``None`` for unset."""
    match = _DEFAULT.match(cell)
    assert match is not None, f"a default starts with `unset` or a value in backticks: {cell}"
    return match.group(1)


def _code_default(field: str) -> object:
    return FloodwallSettings.model_fields[field].get_default(call_default_factory=True)


def _same(shown: str | None, default: object) -> bool:
    if default is None or default in ("", [], {}):
        return shown is None
    if shown is None:
        return False
    if isinstance(default, bool):
        return shown == str(default).lower()
    if isinstance(default, int | float):
        return float(shown) == default
    if isinstance(default, list):
        return shown == ",".join(default)
    return shown == default


def test_the_settings_table_lists_every_field_of_the_settings(project_root: Path) -> None:
    listed = set(_tables(project_root)[0])
    fields = {PREFIX + name.upper() for name in FloodwallSettings.model_fields}
    assert not fields - listed, f"settings missing from docs/settings.md: {fields - listed}"
    assert not listed - fields, f"docs/settings.md lists no such setting: {listed - fields}"


@pytest.mark.parametrize("field", sorted(FloodwallSettings.model_fields))
def test_each_settings_default_is_the_codes(field: str, project_root: Path) -> None:
    row = _tables(project_root)[0].get(PREFIX + field.upper())
    assert row is not None
    shown = _shown(row[1])
    default = _code_default(field)
    assert _same(shown, default), f"{PREFIX + field.upper()}: shows {shown!r}, code has {default!r}"


def test_the_other_table_is_the_variables_read_outside_the_settings(project_root: Path) -> None:
    tables = _tables(project_root)
    assert len(tables) == 2
    assert set(tables[1]) == OTHER_VARIABLES
    assert _same(_shown(tables[1][POOL_VARIABLE][1]), demo_pool_size({}))


@pytest.mark.parametrize(
    ("cell", "default", "same"),
    [
        ("unset", None, True),
        ("unset (`FLOODWALL_RATE`)", None, True),
        ("unset", [], True),
        ("`10`", 10.0, True),
        ("`0.05`", 0.05, True),
        ("`10`", 10.5, False),
        ("`false`", False, True),
        ("`true`", False, False),
        ("`HS256` (with a JWKS URL ...)", ["HS256"], True),
        ("`x-request-id`", "x-request-id", True),
        ("`floodwall`", "other", False),
        ("unset", "x-request-id", False),
        ("`0.5`", None, False),
    ],
)
def test_a_default_cell_is_read_as_its_value(cell: str, default: object, same: bool) -> None:
    assert _same(_shown(cell), default) is same


def test_no_table_of_the_docs_escapes_a_pipe_inside_code(project_root: Path) -> None:
    # GitHub needs `a \| b` in a table cell, where MkDocs shows the backslash: write "or".
    pages = [project_root / "README.md", *sorted((project_root / "docs").glob("*.md"))]
    for page in pages:
        for number, line in enumerate(page.read_text("utf-8").splitlines(), start=1):
            if line.startswith("|"):
                spans = re.findall(r"`[^`]*`", line)
                assert not [span for span in spans if "\\|" in span], f"{page.name}:{number}"


def test_the_observability_page_lists_every_metric_the_service_exports(
    project_root: Path,
) -> None:
    floodwall = Floodwall(FloodwallSettings(capacity=10))
    floodwall.metrics.capacity_limit(10)
    listed = set(
        re.findall(r"^\| `(floodwall_[a-z_]+)` \|", _observability(project_root), re.MULTILINE)
    )
    exported = set()
    for family in floodwall.metrics.registry.collect():
        suffix = "_total" if family.type == "counter" else ""
        exported.add(family.name + suffix)
    assert exported == listed


def _observability(project_root: Path) -> str:
    return (project_root / "docs" / "observability.md").read_text("utf-8")
