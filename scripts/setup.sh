#!/usr/bin/env bash
# Create .venv inside the repo (once) and install oms_trading with its test tools into it.
# With --browser: the browser tests (tests/test_browser_*.py) also need Chromium from the OS
# packages, installed when missing and running as root (never `playwright install`: that downloads a browser
# build of its own, which fails offline). Without it those tests skip and say why.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
# a .venv without a working pip is one a failed `venv` left half made (Debian without
# python3-venv: no ensurepip): made again, or every later run would skip it and fail in pip
if [[ ! -x .venv/bin/python ]] || ! .venv/bin/python -m pip --version >/dev/null 2>&1; then
  rm -rf .venv
  if ! "$PY" -m venv .venv; then
    rm -rf .venv
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
      echo "setup: '$PY -m venv' failed; installing python3-venv (Debian package)" >&2
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
      "$PY" -m venv .venv
    else
      echo "setup: '$PY -m venv' failed: install your OS's python3-venv package, then run this again" >&2
      exit 1
    fi
  fi
fi
# reinstall only when pyproject.toml changed since the last install
stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [[ ! -f $stamp ]]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e '.[dev,plot]'
  rm -f .venv/.installed-*
  touch "$stamp"
fi
if [[ "${1:-}" == "--browser" ]] && [[ -z "${OMS_CHROMIUM:-}" ]] && ! command -v chromium >/dev/null 2>&1; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing chromium (Debian package) for the browser tests" >&2
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }; then
      echo "setup: could not install chromium; the browser tests will skip" >&2
    fi
  else
    echo "setup: chromium is missing (install the 'chromium' package as root); the browser tests will skip" >&2
  fi
fi
