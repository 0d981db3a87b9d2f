# Shared by scripts/test and scripts/demo: a virtualenv (.venv) holding exactly the
# versions of uv.lock, the project and its dev, bench and docs extras. Sourced from the
# project root.
# shellcheck shell=bash

ROOT="$(pwd)"
VENV="$ROOT/.venv"

stage() { printf '\n==> %s\n' "$*"; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    else
        sudo "$@"
    fi
}

apt_install() {
    # Wait for a concurrent apt/dpkg run instead of failing on its lock.
    local apt=(env DEBIAN_FRONTEND=noninteractive apt-get -y -q -o DPkg::Lock::Timeout=600)
    # The package lists may be missing or stale on a fresh machine; only
    # refresh them when the plain install fails, since the refresh is slow.
    if ! as_root "${apt[@]}" install "$@"; then
        as_root "${apt[@]}" update
        as_root "${apt[@]}" install "$@"
    fi
}

find_python() {
    local candidate
    for candidate in python3 python3.13 python3.12 python3.11; do
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            command -v "$candidate"
            return 0
        fi
    done
    return 1
}

stage "python environment"
if [ ! -x "$VENV/bin/python" ]; then
    if ! PYTHON="$(find_python)"; then
        echo "error: Python >= 3.11 is required (python3 not found or too old)" >&2
        exit 1
    fi
    echo "creating $VENV with $PYTHON ($("$PYTHON" --version))"
    rm -rf "$VENV"
    if ! "$PYTHON" -m venv "$VENV"; then
        # Debian's own python3 ships venv/ensurepip in a separate package.
        rm -rf "$VENV"
        apt_install python3-venv
        "$PYTHON" -m venv "$VENV"
    fi
fi

# uv installs the project's environment from uv.lock, exactly; it comes from PyPI at the
# version below, into a small virtualenv of its own.
UV_VERSION="0.13.10"
UV="$ROOT/.tools/uv-$UV_VERSION/bin/uv"
# uv syncs into the .venv made above with that Python; it never downloads one.
export UV_PYTHON_DOWNLOADS=never
if [ ! -x "$UV" ]; then
    echo "installing uv $UV_VERSION into ${UV%/bin/uv}"
    rm -rf "${UV%/bin/uv}"
    "$VENV/bin/python" -m venv "${UV%/bin/uv}"
    "${UV%/bin/uv}/bin/python" -m pip install --disable-pip-version-check -q "uv==$UV_VERSION"
fi

# --locked: a uv.lock that no longer matches pyproject.toml is an error, never a silent
# re-resolution (README, "Refreshing the lock").
"$UV" sync --locked --extra dev --extra bench --extra docs
