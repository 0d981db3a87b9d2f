"""The README is a front door: at most 20,000 bytes, no history (commit hashes belong in git
and ``CHANGELOG.md``), every link to a file of the repository resolves. The Python examples
of the README and of ``docs/`` pass ``mypy --strict`` as written, without the pydantic
plugin. (Links between the pages of ``docs/`` are checked by ``mkdocs build --strict``.)"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"

# [text](target): the target up to a space or the closing bracket.
_LINK = re.compile(r"\]\(([^)\s]+)")
# A commit hash as the README would cite one: 7 to 40 hex digits in backticks.
_COMMIT = re.compile(r"`[0-9a-f]{7,40}`")


def test_the_readme_is_at_most_20000_bytes() -> None:
    assert len(README.read_bytes()) <= 20_000


def test_the_readme_cites_no_commit() -> None:
    assert _COMMIT.findall(README.read_text("utf-8")) == []


def test_the_readmes_links_to_the_repository_resolve() -> None:
    text = README.read_text("utf-8")
    headings = {
        re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in text.splitlines()
        if line.startswith("#")
    }
    links = _LINK.findall(text)
    assert any(link.startswith("docs/") for link in links)
    for link in links:
        if "://" in link:
            continue
        path, _, anchor = link.partition("#")
        if path:
            assert (ROOT / path).exists(), link
        else:
            assert anchor in headings, link


@pytest.mark.slow
def test_the_readme_examples_pass_mypy_strict(tmp_path: Path) -> None:
    pages = [README, *sorted((ROOT / "docs").glob("*.md"))]
    text = "\n".join(page.read_text() for page in pages)
    blocks = re.findall(r"^```python\n(.*?)^```", text, re.S | re.M)
    # A block that includes a file of the project (--8<--) is checked where that file lives.
    blocks = [block for block in blocks if not block.startswith("--8<--")]
    assert len(blocks) >= 3
    files = []
    for number, block in enumerate(blocks, start=1):
        path = tmp_path / f"readme_example_{number}.py"
        path.write_text(block)
        files.append(str(path))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--config-file=",  # none: not the project's pydantic plugin
            "--follow-imports=silent",
            "--cache-dir",
            str(ROOT / ".mypy_cache" / "readme"),
            *files,
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
