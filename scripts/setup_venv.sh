#!/usr/bin/env bash
# Create .venv with Python 3.11 and install requirements.lock + the editable helpers package.
# Idempotent: a stamp keyed on the hash of requirements.lock and pyproject.toml skips work
# when nothing changed. Called by `make setup` (and so by `make lab` / `make test`).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3.11}"
VENV=.venv
STAMP="$VENV/.course-stamp"
TORCH_CPU_INDEX="${TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}"

want_hash="$(cat requirements.lock pyproject.toml | sha256sum | cut -d' ' -f1)"
if [[ -x "$VENV/bin/python" && -f "$STAMP" && "$(cat "$STAMP")" == "$want_hash" ]]; then
    echo "setup: .venv is up to date (requirements.lock unchanged)"
    exit 0
fi

if ! command -v "$PYTHON" >/dev/null 2>&1; then
    echo "setup: ERROR: '$PYTHON' not found. This course needs Python 3.11." >&2
    echo "       Install it (e.g. 'sudo apt install python3.11 python3.11-venv', 'pyenv install 3.11'," >&2
    echo "       or use conda: 'conda env create -f environment.yml'), or run 'make PYTHON=/path/to/python3.11 setup'." >&2
    exit 1
fi
ver="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
if [[ "$ver" != "3.11" ]]; then
    echo "setup: ERROR: '$PYTHON' is Python $ver; this course needs Python 3.11 (its lock is built for 3.11)." >&2
    echo "       Install Python 3.11 and run 'make PYTHON=/path/to/python3.11 setup'." >&2
    exit 1
fi

if [[ ! -x "$VENV/bin/python" ]]; then
    echo "setup: creating $VENV with $PYTHON ($ver)"
    "$PYTHON" -m venv "$VENV"
fi

# torch==2.13.0+cpu: use a local wheel if pip's find-links already has one, else PyTorch's CPU index.
# Never let pip pick the multi-GB CUDA build by accident.
extra=()
links="$("$VENV/bin/pip" config get global.find-links 2>/dev/null || true)"
have_local=0
for d in $links; do
    d="${d#file://}"
    if compgen -G "$d/torch-2.13.0+cpu-*.whl" >/dev/null 2>&1; then have_local=1; fi
done
if [[ "$have_local" == 0 ]]; then
    extra+=(--extra-index-url "$TORCH_CPU_INDEX")
fi

start=$(date +%s)
echo "setup: installing requirements.lock into $VENV (a fresh install takes a few minutes)"
"$VENV/bin/pip" install --quiet --disable-pip-version-check "${extra[@]}" --no-deps -r requirements.lock
"$VENV/bin/pip" install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
"$VENV/bin/pip" check >/dev/null || { "$VENV/bin/pip" check; echo "setup: ERROR: inconsistent environment" >&2; exit 1; }
echo "$want_hash" > "$STAMP"
echo "setup: done in $(( $(date +%s) - start )) s"
