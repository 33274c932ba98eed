#!/bin/sh
# Peak RSS of `meshtrail als` and `meshtrail inject` for every case of the
# hostile-input suite (test/hostile), for a build before issue 15 and this
# checkout, each case in a fresh process; then the receiver's cost per
# stream (TestALSPerStreamBound) at the default GC setting and with
# GOMEMLIMIT=128MiB (its live part). Medians of RUNS runs, in KiB.
#
# usage: bench/hostile.sh [BEFORE_REV] [RUNS]     (from the repository root)
set -eu
before=${1:-a1c406b}
runs=${2:-3}
root=$(git rev-parse --show-toplevel)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/src"
git -C "$root" archive "$before" | tar -x -C "$work/src"
(cd "$work/src" && CGO_ENABLED=0 go build -trimpath -o "$work/before" ./cmd/meshtrail)
(cd "$root" && CGO_ENABLED=0 go build -trimpath -o "$work/after" ./cmd/meshtrail)
cd "$root"
for i in $(seq "$runs"); do
	for v in before after; do
		# A case the old build fails ends early and reports no figure.
		MESHTRAIL_HOSTILE_BIN=$work/$v MESHTRAIL_HOSTILE_REPORT=$work/$v.txt \
			go test -count=1 -run 'HostileInput' ./test/hostile/ >/dev/null 2>&1 || true
	done
	MESHTRAIL_HOSTILE_BIN=$work/after MESHTRAIL_HOSTILE_REPORT=$work/stream.txt \
		go test -count=1 -run TestALSPerStreamBound ./test/hostile/ >/dev/null 2>&1 || true
	MESHTRAIL_HOSTILE_GOMEMLIMIT=128MiB MESHTRAIL_HOSTILE_BIN=$work/after MESHTRAIL_HOSTILE_REPORT=$work/stream-memlimit.txt \
		go test -count=1 -run TestALSPerStreamBound ./test/hostile/ >/dev/null 2>&1 || true
done
median() { # file -> "server case median" lines
	sort -k1,2 -k3,3n "$1" | awk '{k=$1" "$2; v[k]=v[k]" "$3; n[k]++} END {for (k in v) {split(substr(v[k],2),a," "); print k, a[int((n[k]+1)/2)]}}' | sort
}
echo "| server | case | before KiB | after KiB |"
echo "|---|---|---|---|"
median "$work/after.txt" > "$work/after.med"
median "$work/before.txt" > "$work/before.med" 2>/dev/null || : > "$work/before.med"
while read -r server name after; do
	b=$(awk -v s="$server" -v c="$name" '$1==s && $2==c {print $3}' "$work/before.med")
	echo "| $server | ${name#*/} | ${b:-ended early (finding not fixed)} | $after |"
done < "$work/after.med"
echo
echo "per stream (8 streams x one 4 MiB message of 524,279 entries), KiB:"
echo "default GC: $(median "$work/stream.txt" | awk '{print $3}'); GOMEMLIMIT=128MiB: $(median "$work/stream-memlimit.txt" | awk '{print $3}')"
