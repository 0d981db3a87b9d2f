"""Print the packages of this Python environment whose versions differ from uv.lock.

Run with the interpreter of a resolution other than the lock's (scripts/test runs the
lowest and the highest versions the ranges allow): when the suite then fails, the
packages printed just before are the ones to suspect, named with both versions.

Usage: python scripts/versions_vs_lock.py uv.lock [NAME...]
Names given are printed even when they match the lock (the project's direct
dependencies, say), so a log shows which ends of their ranges were tested.
"""

from __future__ import annotations

import re
import sys
import tomllib
from importlib import metadata


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def main(argv: list[str]) -> int:
    with open(argv[1], "rb") as lock_file:
        lock = tomllib.load(lock_file)
    locked = {_normal(package["name"]): package.get("version") for package in lock["package"]}
    always = {_normal(name) for name in argv[2:]}
    installed = {_normal(dist.metadata["Name"]): dist.version for dist in metadata.distributions()}
    rows = []
    for name in sorted(installed):
        have, want = installed[name], locked.get(name)
        if name in always or have != want:
            mark = "" if have == want else "   <- differs from uv.lock"
            rows.append(f"  {name:28} {want or '(not locked)':>14} -> {have}{mark}")
    print(f"{'':2}{'package':28} {'uv.lock':>14} -> this environment")
    print("\n".join(rows) or "  (every package as in uv.lock)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
