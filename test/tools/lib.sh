# Shared helpers for tools/<name>.sh installers. Each installer builds or
# installs one tool into $TOOLS_DIR/<name>-<version>/ and links
# $TOOLS_DIR/bin/<name> to it. A second run finds it cached and returns at once.
set -euo pipefail
TOOLS_DIR="${MESHTRAIL_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/meshtrail/tools}"
mkdir -p "$TOOLS_DIR/bin"
export GOFLAGS="${GOFLAGS:-} -trimpath"
export CGO_ENABLED="${CGO_ENABLED:-0}"
# Pinned versions only: the module proxy refuses @latest.
export GONOSUMDB="${GONOSUMDB:-go.opentelemetry.io,github.com/open-telemetry}"

log() { printf '[tools] %s\n' "$*" >&2; }

# cached NAME VERSION BINARY: true (and re-links bin/NAME) when already built.
cached() {
  local name=$1 version=$2 bin=$3
  local dir="$TOOLS_DIR/$name-$version"
  if [ -x "$dir/$bin" ]; then
    ln -sfn "$dir/$bin" "$TOOLS_DIR/bin/$bin"
    log "$name $version: cached"
    return 0
  fi
  return 1
}

# publish NAME VERSION BINARY: link a freshly built $TOOLS_DIR/NAME-VERSION/BINARY.
publish() {
  local name=$1 version=$2 bin=$3
  ln -sfn "$TOOLS_DIR/$name-$version/$bin" "$TOOLS_DIR/bin/$bin"
  log "$name $version: installed $TOOLS_DIR/bin/$bin"
}
