#!/usr/bin/env bash
# Create .venv and install unmask with the pinned stack when missing or out of date.
# Idempotent: a stamp holding the hash of pyproject.toml + constraints.txt skips the install when nothing changed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${UNMASK_VENV:-$ROOT/.venv}"
PY="${PYTHON:-}"
if [[ -z "$PY" ]]; then
  for cand in python3.11 python3.12 python3.13 python3; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
      PY="$cand"; break
    fi
  done
fi
[[ -n "$PY" ]] || { echo "unmask: need Python >= 3.11 on PATH (or set PYTHON=...)" >&2; exit 1; }

if [[ ! -x "$VENV/bin/python" ]]; then
  echo "[bootstrap] creating virtual environment $VENV" >&2
  "$PY" -m venv "$VENV"
fi
STAMP="$VENV/.unmask-install-stamp"
WANT="$(cat "$ROOT/pyproject.toml" "$ROOT/constraints.txt" | sha256sum | cut -d' ' -f1)"
if [[ ! -f "$STAMP" ]] || [[ "$(cat "$STAMP")" != "$WANT" ]] || ! "$VENV/bin/python" -c 'import unmask' >/dev/null 2>&1; then
  echo "[bootstrap] installing unmask and its pinned dependencies (first run: a few minutes)" >&2
  "$VENV/bin/python" -m pip install --quiet --upgrade pip >&2
  # torch first, alone, so that nothing can resolve it to a CUDA build.
  "$VENV/bin/python" -m pip install --quiet -c "$ROOT/constraints.txt" "torch==2.13.0" >&2
  "$VENV/bin/python" -m pip install --quiet -c "$ROOT/constraints.txt" -e "$ROOT[dev]" >&2
  echo "$WANT" > "$STAMP"
fi
