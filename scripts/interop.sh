#!/usr/bin/env bash
# Interoperability with a standard FIX engine: QuickFIX as the initiator against `oms serve`
# (tests/test_interop_quickfix.py). QuickFIX has no wheel on PyPI: the first run compiles it into
# .venv (several minutes on 2 cores); later runs take seconds. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if ! .venv/bin/python -c "import quickfix" 2>/dev/null; then
  echo "interop: building quickfix (C++ engine, Python binding) into .venv" >&2
  .venv/bin/python -m pip install --quiet 'quickfix>=1.16'
fi
exec .venv/bin/python -m pytest -q -p no:cacheprovider -rs tests/test_interop_quickfix.py "$@"
