#!/usr/bin/env bash
# /grub benchmark: metalboot's labserver against matchbox v0.11.0, both
# serving the seed lab's data directory on loopback, measured one after the
# other by the same closed-loop load generator (internal/bench/grubload) with
# keep-alive connections, alternating for a few rounds. Prints the median
# requests/s, p50/p99 latency and the median ratio.
#
#   internal/bench/grub.sh [seconds]   (per server and round, default 3)
#   C=4 ROUNDS=3 internal/bench/grub.sh  (connections, default 4; rounds, default 3)
#
# Needs Go and the Go module proxy (matchbox is built from its module:
# go mod download -json github.com/poseidon/matchbox@v0.11.0, then go build
# ./cmd/matchbox in a copy of the printed Dir; the binary is cached in
# $MATCHBOX_BIN, default /tmp/metalboot-bench-matchbox). Listens on
# 127.0.0.1 only (ports $PORT_MB and $PORT_MX, default 18480 and 18481).
# With taskset (util-linux) each server runs on CPU 0 and the load generator
# on CPU 1, so both servers get the same share of the 2-core machine. Only
# processes this script started are stopped, by PID.
#
# Requests rotate over the seed lab's three answers: mp (00:23:32:2f:40:3c),
# smpc (00:30:48:fb:e2:44) and a machine of the default group; every 200
# body must contain "ignition?" (the rendered kernel argument).
set -euo pipefail

DUR=${1:-3}
C=${C:-4}
ROUNDS=${ROUNDS:-3}
PORT_MB=${PORT_MB:-18480}
PORT_MX=${PORT_MX:-18481}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DATA=${DATA:-$ROOT/internal/fixtures/seedlab}
MATCHBOX_BIN=${MATCHBOX_BIN:-/tmp/metalboot-bench-matchbox}
command -v go >/dev/null || { echo "grub.sh: go not found" >&2; exit 1; }

TMP=$(mktemp -d /tmp/mb-grub-bench.XXXXXX)
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$TMP"
}
trap cleanup EXIT

SRV_CPU=() LOAD_CPU=()
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
	SRV_CPU=(taskset -c 0) LOAD_CPU=(taskset -c 1)
fi

echo "building labserver and grubload ..." >&2
(cd "$ROOT" && go build -o "$TMP/labserver" ./examples/labserver && go build -o "$TMP/grubload" ./internal/bench/grubload)
if [ ! -x "$MATCHBOX_BIN" ]; then
	echo "building matchbox v0.11.0 from its Go module ..." >&2
	dir=$(cd "$TMP" && go mod download -json github.com/poseidon/matchbox@v0.11.0 | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
	[ -d "$dir" ] || { echo "grub.sh: go mod download of matchbox failed" >&2; exit 1; }
	cp -r "$dir" "$TMP/matchbox-src" && chmod -R u+w "$TMP/matchbox-src"
	(cd "$TMP/matchbox-src" && go build -o "$MATCHBOX_BIN" ./cmd/matchbox)
fi

wait_up() { # url
	for _ in $(seq 1 100); do
		curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
		sleep 0.1
	done
	echo "grub.sh: server at $1 did not come up" >&2
	return 1
}
urls() { # port
	local b="http://127.0.0.1:$1/grub?mac="
	echo "${b}00:23:32:2f:40:3c,${b}00:30:48:fb:e2:44,${b}52:54:00:ab:cd:ef"
}

"${SRV_CPU[@]}" "$TMP/labserver" -data "$DATA" -http "127.0.0.1:$PORT_MB" -tftp "" -dns "" \
	-base-url http://deploy.lab:8080 >"$TMP/labserver.log" 2>&1 &
PIDS+=($!)
"${SRV_CPU[@]}" "$MATCHBOX_BIN" -data-path "$DATA" -assets-path "" -address "127.0.0.1:$PORT_MX" \
	-log-level warn >"$TMP/matchbox.log" 2>&1 &
PIDS+=($!)
wait_up "http://127.0.0.1:$PORT_MB/grub?mac=00:23:32:2f:40:3c"
wait_up "http://127.0.0.1:$PORT_MX/grub?mac=00:23:32:2f:40:3c"

# Alternate the two servers for $ROUNDS rounds (both stay up, idle while
# the other is measured), so a change in the machine's load hits both;
# report each server's median round and the median of the per-round ratios.
: >"$TMP/rounds"
for r in $(seq 1 "$ROUNDS"); do
	mb=$("${LOAD_CPU[@]}" "$TMP/grubload" -name metalboot -url "$(urls "$PORT_MB")" -c "$C" -d "${DUR}s" -warmup 300ms -expect 'ignition?')
	mx=$("${LOAD_CPU[@]}" "$TMP/grubload" -name matchbox -url "$(urls "$PORT_MX")" -c "$C" -d "${DUR}s" -warmup 300ms -expect 'ignition?')
	echo "round $r: $mb | $mx" >&2
	echo "$mb $mx" >>"$TMP/rounds"
done
# columns: name rps p50 p99 max errors (metalboot, then matchbox)
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
printf '%-10s %10s %9s %9s %7s\n' server 'req/s' 'p50 µs' 'p99 µs' errors
for i in 0 6; do
	name=$(awk -v i=$i 'NR == 1 { print $(i + 1) }' "$TMP/rounds")
	rps=$(awk -v i=$i '{ print $(i + 2) }' "$TMP/rounds" | median)
	p50=$(awk -v i=$i '{ print $(i + 3) }' "$TMP/rounds" | median)
	p99=$(awk -v i=$i '{ print $(i + 4) }' "$TMP/rounds" | median)
	errs=$(awk -v i=$i '{ s += $(i + 6) } END { print s }' "$TMP/rounds")
	printf '%-10s %10s %9s %9s %7s\n' "$name" "$rps" "$p50" "$p99" "$errs"
done
ratio=$(awk '{ printf "%.3f\n", $2 / $8 }' "$TMP/rounds" | median)
p99=$(awk '{ print $4 }' "$TMP/rounds" | median)
awk -v r="$ratio" -v p="$p99" 'BEGIN { printf "/grub ratio metalboot/matchbox: %.2fx req/s (median of rounds; target >= 3x); metalboot p99 %.2f ms (target < 1 ms)\n", r, p/1000 }'
echo "($(date -u +%FT%TZ), $(nproc) CPUs, C=$C, $ROUNDS rounds of ${DUR}s per server, load average: $(cut -d' ' -f1-3 /proc/loadavg))"
