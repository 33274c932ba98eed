#!/usr/bin/env bash
# Installs the tools the tests and benchmarks need: tools/install.sh [NAME...]
# (default: every test/tools/<name>.sh). Cached by version under $MESHTRAIL_TOOLS_DIR (default ~/.cache/meshtrail/tools).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
names=("$@")
if [ ${#names[@]} -eq 0 ]; then
  for f in "$here"/*.sh; do
    n=$(basename "$f" .sh)
    case "$n" in lib|install) continue ;; esac
    names+=("$n")
  done
fi
for n in "${names[@]}"; do
  start=$(date +%s)
  bash "$here/$n.sh"
  printf '[tools] %s ready in %ss\n' "$n" $(( $(date +%s) - start )) >&2
done
