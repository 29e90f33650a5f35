#!/usr/bin/env bash
# Create .venv inside the repo (once) and install oms_trading with its test tools into it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
  "$PY" -m venv .venv
fi
# reinstall only when pyproject.toml changed since the last install
stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [[ ! -f $stamp ]]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e '.[dev,plot]'
  rm -f .venv/.installed-*
  touch "$stamp"
fi
