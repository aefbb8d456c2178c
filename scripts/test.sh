#!/usr/bin/env bash
# README command 2: set up when needed, then run the test suite. Extra arguments go to pytest.
# pytest's exit code 5 ("no tests collected") is turned into a failure: an empty run is not a green run.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/bootstrap.sh" || exit 1
cd "$ROOT"
# The browser test (tests/test_serve_browser.py) drives Debian's Chromium through Playwright (the dev extra):
# install it when it is missing and we are root; elsewhere that test skips and says why.
CHROMIUM="${UNMASK_CHROMIUM:-/usr/bin/chromium}"
if [[ ! -x "$CHROMIUM" ]] && [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
  echo "[test] installing chromium for the browser test (apt-get, once)" >&2
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >/dev/null 2>&1 \
    || echo "[test] could not install chromium: the browser test will skip" >&2
fi
"${UNMASK_VENV:-$ROOT/.venv}/bin/python" -m pytest "$@"
rc=$?
if [[ $rc -eq 5 ]]; then echo "unmask: pytest collected no tests; failing" >&2; exit 1; fi
exit $rc
