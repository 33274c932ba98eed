#!/usr/bin/env bash
# Runs every fuzz target for a while: test/fuzz.sh [DURATION] (default 20s).
# New inputs that find new coverage land in Go's cache; copy the ones worth
# keeping into the package's testdata/fuzz/<Target>/ so every `go test` replays them.
set -euo pipefail
cd "$(dirname "$0")/.."
dur=${1:-20s}
grep -rl --include='*_test.go' '^func Fuzz' . | while read -r f; do
  pkg=./$(dirname "${f#./}")
  grep -o '^func Fuzz[A-Za-z0-9_]*' "$f" | sed 's/^func //' | while read -r target; do
    echo "== $pkg $target ($dur)"
    go test -run XXX -fuzz "^${target}\$" -fuzztime "$dur" "$pkg"
  done
done
