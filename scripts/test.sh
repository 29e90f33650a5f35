#!/usr/bin/env bash
# Fresh machine -> the whole test suite: set up .venv, then pytest. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --browser
set +e
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
status=$?
set -e
if [[ $status -eq 5 ]]; then
  echo "no tests were collected" >&2
  exit 1
fi
exit $status
