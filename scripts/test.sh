#!/usr/bin/env bash
# README command 2: set up when needed, then run the test suite. Extra arguments go to pytest.
# pytest's exit code 5 ("no tests collected") is turned into a failure: an empty run is not a green run.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/bootstrap.sh" || exit 1
cd "$ROOT"
"${UNMASK_VENV:-$ROOT/.venv}/bin/python" -m pytest "$@"
rc=$?
if [[ $rc -eq 5 ]]; then echo "unmask: pytest collected no tests; failing" >&2; exit 1; fi
exit $rc
