#!/usr/bin/env bash
# /assets under a boot storm: N clients at once, each fetching a large file
# (a PXE initrd is hundreds of MB) over HTTP from metalboot's labserver,
# nginx (Debian nginx-light, sendfile on) and matchbox v0.11.0, one server
# after the other in the same run, on loopback. Every 5th client fetches its
# file as four range requests, as resuming or parallel downloaders do.
#
#   internal/bench/assets.sh                 # 100 clients, 256 MiB
#   CLIENTS=20 SIZE_MIB=64 ASSETS_ROUNDS=2 internal/bench/assets.sh
#
# Reports per server: aggregate MB/s, p99 time to first byte, failures (a
# wrong status or a wrong byte count), and peak RSS (VmHWM); prints RESULT
# lines with metalboot/peer ratios. Needs curl, nginx, Go; matchbox is built
# like http.sh does (cached in $CACHE). Only processes this script started
# are stopped, by PID.
set -euo pipefail

CLIENTS=${CLIENTS:-100}
SIZE_MIB=${SIZE_MIB:-256}
ROUNDS=${ASSETS_ROUNDS:-1}
PORT_MB=${PORT_MB:-18680}
PORT_NG=${PORT_NG:-18681}
PORT_MX=${PORT_MX:-18682}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=internal/bench/lib.sh
. "$(dirname "$0")/lib.sh"
for p in go curl nginx awk; do
	command -v "$p" >/dev/null || { echo "assets.sh: $p not found (apt-get install curl nginx-light)" >&2; exit 1; }
done
matchbox_cache
[ -x "$MATCHBOX_BIN" ] || { echo "assets.sh: $MATCHBOX_BIN missing: run internal/bench/http.sh (or FETCH_ONLY=1 http.sh) once" >&2; exit 1; }

scratch mb-assets-bench

mkdir -p "$TMP/assets/flatcar" "$TMP/data/profiles" "$TMP/data/groups" "$TMP/ngx"
FILE=flatcar/initrd.img
head -c "$((SIZE_MIB << 20))" /dev/urandom >"$TMP/assets/$FILE"
SIZE=$((SIZE_MIB << 20))
cat "$TMP/assets/$FILE" >/dev/null # in the page cache for every server alike
chmod -R a+rX "$TMP" # nginx's workers run as www-data

echo "assets.sh: building labserver ..." >&2
(cd "$ROOT" && go build -o "$TMP/labserver" ./examples/labserver)

cat >"$TMP/ngx/nginx.conf" <<EOF
worker_processes 2;
pid $TMP/ngx/nginx.pid;
error_log $TMP/ngx/error.log warn;
daemon off;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  client_body_temp_path $TMP/ngx;
  proxy_temp_path $TMP/ngx;
  fastcgi_temp_path $TMP/ngx;
  uwsgi_temp_path $TMP/ngx;
  scgi_temp_path $TMP/ngx;
  server {
    listen 127.0.0.1:$PORT_NG;
    location /assets/ { alias $TMP/assets/; }
  }
}
EOF

SERVER_PID=
start() { # name
	case $1 in
	metalboot) "$TMP/labserver" -http "127.0.0.1:$PORT_MB" -tftp "" -dns "" -assets "$TMP/assets" >"$TMP/mb.log" 2>&1 & ;;
	nginx) nginx -c "$TMP/ngx/nginx.conf" >"$TMP/ngx.log" 2>&1 & ;;
	matchbox) "$MATCHBOX_BIN" -data-path "$TMP/data" -assets-path "$TMP/assets" -address "127.0.0.1:$PORT_MX" >"$TMP/mx.log" 2>&1 & ;;
	esac
	SERVER_PID=$!
	PIDS+=("$SERVER_PID")
	for _ in $(seq 100); do
		curl -fsS -o /dev/null -r 0-0 "$(url "$1")" 2>/dev/null && return 0
		sleep 0.1
	done
	echo "assets.sh: $1 did not come up" >&2
	exit 1
}
url() {
	case $1 in
	metalboot) echo "http://127.0.0.1:$PORT_MB/assets/$FILE" ;;
	nginx) echo "http://127.0.0.1:$PORT_NG/assets/$FILE" ;;
	matchbox) echo "http://127.0.0.1:$PORT_MX/assets/$FILE" ;;
	esac
}
# rss_kb: peak RSS of the server and its children (nginx's workers).
rss_kb() {
	local total=0 p kb
	for p in $1 $(pgrep -P "$1" 2>/dev/null || true); do
		kb=$(awk '/^VmHWM:/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)
		total=$((total + ${kb:-0}))
	done
	echo "$total"
}
stop() {
	kill "$SERVER_PID" 2>/dev/null || true
	wait "$SERVER_PID" 2>/dev/null || true
	SERVER_PID=
}

# client I URL: one client's download; prints "ttfb bytes ok" for it.
client() {
	local i=$1 u=$2 q=$((SIZE / 4)) out ttfb=0 bytes=0 ok=1 k from to r
	if [ $((i % 5)) = 0 ]; then
		for k in 0 1 2 3; do
			from=$((k * q)); to=$((k == 3 ? SIZE - 1 : from + q - 1))
			r=$(curl -s -o /dev/null -r "$from-$to" -w '%{http_code} %{time_starttransfer} %{size_download}' "$u" || echo "000 0 0")
			set -- $r
			[ "$1" = 206 ] && [ "$3" = $((to - from + 1)) ] || ok=0
			[ "$k" = 0 ] && ttfb=$2
			bytes=$((bytes + $3))
		done
	else
		r=$(curl -s -o /dev/null -w '%{http_code} %{time_starttransfer} %{size_download}' "$u" || echo "000 0 0")
		set -- $r
		[ "$1" = 200 ] && [ "$3" = "$SIZE" ] || ok=0
		ttfb=$2 bytes=$3
	fi
	echo "$ttfb $bytes $ok"
}

declare -A MBPS P99 FAIL RSS
storm() { # name round
	local name=$1 u t0 t1 i
	start "$name"
	u=$(url "$name")
	: >"$TMP/$name.res"
	t0=$(date +%s.%N)
	for i in $(seq "$CLIENTS"); do client "$i" "$u" >>"$TMP/$name.res" & done
	wait_clients
	t1=$(date +%s.%N)
	local rss mbps p99 fails
	rss=$(rss_kb "$SERVER_PID")
	stop
	mbps=$(awk -v t0="$t0" -v t1="$t1" '{b += $2} END {printf "%.0f", b / 1048576 / (t1 - t0)}' "$TMP/$name.res")
	p99=$(sort -n "$TMP/$name.res" | awk '{a[NR] = $1} END {i = int(NR * 0.99); if (i < 1) i = 1; printf "%.1f", a[i] * 1000}')
	fails=$(awk '$3 != 1 {n++} END {print n + 0}' "$TMP/$name.res")
	printf '  round %s %-9s %6s MB/s  p99 TTFB %7s ms  failures %s  peak RSS %s MiB\n' "$2" "$name" "$mbps" "$p99" "$fails" "$((rss / 1024))" >&2
	if [ -z "${MBPS[$name]:-}" ] || [ "$mbps" -gt "${MBPS[$name]}" ]; then MBPS[$name]=$mbps P99[$name]=$p99; fi
	FAIL[$name]=$(( ${FAIL[$name]:-0} + fails ))
	if [ "$rss" -gt "${RSS[$name]:-0}" ]; then RSS[$name]=$rss; fi
}
# wait_clients waits for the client jobs only (servers are not jobs of
# this shell's current pipeline, but are in PIDS).
wait_clients() {
	local j
	for j in $(jobs -p); do
		[[ " ${PIDS[*]} " == *" $j "* ]] || wait "$j" 2>/dev/null || true
	done
}

echo "== /assets storm: $CLIENTS clients x $SIZE_MIB MiB (every 5th as 4 range requests), best of $ROUNDS rounds, $(nproc) CPUs" >&2
for round in $(seq "$ROUNDS"); do
	for s in metalboot nginx matchbox; do storm "$s" "$round"; done
done
printf '%-10s %10s %14s %10s %14s\n' server 'MB/s' 'p99 TTFB ms' failures 'peak RSS MiB'
for s in metalboot nginx matchbox; do
	printf '%-10s %10s %14s %10s %14s\n' "$s" "${MBPS[$s]}" "${P99[$s]}" "${FAIL[$s]}" "$((RSS[$s] / 1024))"
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
for peer in nginx matchbox; do
	echo "RESULT name=assets_storm_mb_per_s metalboot=${MBPS[metalboot]} peer=$peer:${MBPS[$peer]} ratio=$(ratio "${MBPS[metalboot]}" "${MBPS[$peer]}")"
	echo "RESULT name=assets_storm_p99_ttfb_ms metalboot=${P99[metalboot]} peer=$peer:${P99[$peer]} ratio=$(ratio "${P99[metalboot]}" "${P99[$peer]}")"
	echo "RESULT name=assets_storm_failures metalboot=${FAIL[metalboot]} peer=$peer:${FAIL[$peer]} ratio=n/a"
	echo "RESULT name=assets_storm_peak_rss_mib metalboot=$((RSS[metalboot] / 1024)) peer=$peer:$((RSS[$peer] / 1024)) ratio=$(ratio "${RSS[metalboot]}" "${RSS[$peer]}")"
done
