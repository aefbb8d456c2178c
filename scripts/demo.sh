#!/usr/bin/env bash
# README command 1: set up when needed, then run unmask's main job on the embedded default input
# (scikit-image's public-domain astronaut portrait). Extra arguments go to `unmask demo`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/bootstrap.sh"
exec "${UNMASK_VENV:-$ROOT/.venv}/bin/unmask" demo "$@"
