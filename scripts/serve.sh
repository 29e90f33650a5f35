#!/usr/bin/env bash
# Fresh machine -> running OMS: set up .venv, then `oms serve` on the built-in demo config.
# Extra arguments go to `oms serve` (e.g. --data-dir, --fix-port, --config).
set -euo pipefail
# --config and --data-dir name paths from where this was started, as the user typed them: made
# absolute before the cd into the repo (which would read them from the repo's root instead).
# Without --data-dir the data stays in the repo's ./oms-data, as the README says.
args=()
path_next=""
for arg in "$@"; do
  if [[ -n $path_next ]]; then
    [[ -z $arg || $arg == /* ]] || arg="$PWD/$arg"
    path_next=""
  else
    case $arg in
      --config|--data-dir) path_next=1 ;;
      --config=?*|--data-dir=?*) [[ ${arg#*=} == /* ]] || arg="${arg%%=*}=$PWD/${arg#*=}" ;;
    esac
  fi
  args+=("$arg")
done
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/oms serve ${args[@]+"${args[@]}"}
