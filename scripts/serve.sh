#!/usr/bin/env bash
# Fresh machine -> running OMS: set up .venv, then `oms serve` on the built-in demo config.
# Extra arguments go to `oms serve` (e.g. --data-dir, --fix-port, --config).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/oms serve "$@"
