#!/usr/bin/env bash
# Installs Prometheus (the RED metrics scrape target and remote-write
# receiver in end-to-end tests) from Debian's archive and links it into
# $TOOLS_DIR/prometheus-<debian version>/prometheus. Debian 12 ships 2.42,
# which has --web.enable-remote-write-receiver and exemplar storage.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

installed_version() { dpkg-query -W -f='${Version}' prometheus 2>/dev/null || true; }

v=$(installed_version)
if [ -n "$v" ] && cached prometheus "$v" prometheus; then exit 0; fi

if [ -z "$v" ] || [ ! -x /usr/bin/prometheus ]; then
  if [ "$(id -u)" != 0 ]; then
    log "prometheus: not installed and not root: run 'sudo apt-get install -y prometheus'"
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  # Wait for other apt users (other engineers' installers) rather than fail.
  apt_get() { apt-get -o DPkg::Lock::Timeout=600 -o Acquire::Retries=3 "$@"; }
  log "prometheus: apt-get install"
  if ! apt_get install -y --no-install-recommends prometheus; then
    # Only refresh the package lists when the install could not find it.
    log "prometheus: apt-get update, then install again"
    apt_get update
    apt_get install -y --no-install-recommends prometheus
  fi
  # The package's init script may have started a system Prometheus on :9090;
  # tests run their own on free ports, so stop it (best effort, no systemd here).
  if command -v service >/dev/null 2>&1; then service prometheus stop >/dev/null 2>&1 || true; fi
  v=$(installed_version)
fi

mkdir -p "$TOOLS_DIR/prometheus-$v"
ln -sfn /usr/bin/prometheus "$TOOLS_DIR/prometheus-$v/prometheus"
[ -x /usr/bin/promtool ] && ln -sfn /usr/bin/promtool "$TOOLS_DIR/bin/promtool"
publish prometheus "$v" prometheus
