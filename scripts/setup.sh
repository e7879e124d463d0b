#!/usr/bin/env bash
# Idempotent set-up: a virtualenv in .venv with every dependency, and the
# Rust extension built in release mode and installed into it. Safe to re-run:
# an existing venv is reused and cargo rebuilds only what changed.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
# Optional-dependency groups of pyproject.toml to install ("bench" adds the
# peer libraries the benchmarks compare against).
EXTRAS=${EXTRAS:-test dev local plots parquet redis}

if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
# shellcheck disable=SC1091
source "$VENV/bin/activate"

# Only reinstall the Python tooling when the project's pins change.
stamp="$VENV/.deps-stamp"
want=$( (sha256sum pyproject.toml; echo "$EXTRAS") | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    python -m pip install --quiet --upgrade pip
    python -m pip install --quiet "maturin>=1.9,<2"
    # Dependencies and the dev extra, without building the package yet.
    EXTRAS="$EXTRAS" python - <<'PY' > "$VENV/.requirements.txt"
import os
import tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
deps = list(project["dependencies"])
extras = project["optional-dependencies"]
for extra in os.environ["EXTRAS"].split():
    deps += [d for d in extras[extra] if not d.startswith("zeta_fast")]
print("\n".join(deps))
PY
    python -m pip install --quiet -r "$VENV/.requirements.txt"
    echo "$want" > "$stamp"
fi

# System packages the tests drive for real, from the distribution: Chromium
# (the dashboard's browser tests) and Redis (the scale-out tests start their
# own redis-server on 127.0.0.1). Installed once, when missing.
missing=""
command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
command -v redis-server >/dev/null 2>&1 || missing="$missing redis-server"
# The outcome log's writer links the system's SQLite (the one Python's
# sqlite3 module uses: see Cargo.toml), which needs its link-time name.
ls /usr/lib/*/libsqlite3.so /usr/lib/libsqlite3.so >/dev/null 2>&1 || missing="$missing libsqlite3-dev"
if [ -n "$missing" ]; then
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        # shellcheck disable=SC2086
        apt-get install -y -qq --no-install-recommends $missing >/dev/null
    else
        echo "warning: missing$missing (apt-get install$missing as root):" \
            "the browser and scale-out tests will fail" >&2
    fi
fi

# Release build: benchmarks and the demo must measure optimised code.
maturin develop --release
