#!/usr/bin/env bash
# DNS benchmark: dnsperf against metalboot's dnssrv and against dnsmasq,
# serving the same names from the same hosts file, in the same run, on
# loopback only. Prints queries per second for each and the ratio.
#
# ADDR defaults to ::1: Debian's dnsperf 2.10 turns "-s 127.0.0.1" into
# ::ffff:127.0.0.1 on an IPv6 socket, and on the bench VM every such send
# fails with "Network is unreachable" (0 queries sent). Set ADDR=127.0.0.1
# where that works.
#
#   internal/bench/dns.sh            # defaults: DURATION=10 ROUNDS=2 NAMES=1000
#   DURATION=5 ROUNDS=1 internal/bench/dns.sh
#   PROFILE=/tmp/dns.pprof internal/bench/dns.sh   # CPU profile of dnssrv
#
# Needs: go, dnsperf, dnsmasq, dig (Debian: dnsperf dnsmasq-base bind9-dnsutils).
# The query mix: A of known names (NOERROR), AAAA of the same A-only names
# (NODATA), PTR of their addresses, A of unknown names in the zone (NXDOMAIN).
set -euo pipefail

DURATION=${DURATION:-10}   # seconds per dnsperf run
ROUNDS=${ROUNDS:-2}        # alternating runs per server
NAMES=${NAMES:-1000}       # hosts in the zone
CLIENTS=${CLIENTS:-4}      # dnsperf -c
OUTSTANDING=${OUTSTANDING:-200} # dnsperf -q
PROFILE=${PROFILE:-}
ADDR=${ADDR:-::1}          # loopback address both servers listen on
case $ADDR in *:*) hostport() { echo "[$ADDR]:$1"; } ;; *) hostport() { echo "$ADDR:$1"; } ;; esac

for tool in go dnsperf dnsmasq dig; do
	command -v "$tool" >/dev/null || { echo "dns.sh: $tool not found" >&2; exit 2; }
done
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT

(cd "$root" && go build -o "$work/dnsbench" ./dnssrv/internal/dnsbench)

# Same names for both servers.
hosts=$work/hosts queries=$work/queries
: >"$hosts"; : >"$queries"
for ((i = 0; i < NAMES; i++)); do
	a=172.22.$((10 + i / 250)).$((i % 250 + 2))
	echo "$a host$i.lab" >>"$hosts"
done
echo "172.22.10.2 deploy.lab" >>"$hosts"
for ((i = 0; i < NAMES; i++)); do
	a=172.22.$((10 + i / 250)).$((i % 250 + 2))
	IFS=. read -r o1 o2 o3 o4 <<<"$a"
	printf 'host%d.lab A\nhost%d.lab AAAA\n%s.%s.%s.%s.in-addr.arpa PTR\nnohost%d.lab A\n' \
		"$i" "$i" "$o4" "$o3" "$o2" "$o1" "$i" >>"$queries"
done

port_mb=$("$work/dnsbench" -freeport)
port_dm=$("$work/dnsbench" -freeport)
while [ "$port_dm" = "$port_mb" ]; do port_dm=$("$work/dnsbench" -freeport); done

"$work/dnsbench" -listen "$(hostport "$port_mb")" -hosts "$hosts" -zone lab. -reverse 172.22.0.0/16 \
	${PROFILE:+-cpuprofile "$PROFILE"} 2>"$work/dnsbench.log" &
pid_mb=$!; pids+=("$pid_mb")
dnsmasq --keep-in-foreground --port="$port_dm" --listen-address="$ADDR" --bind-interfaces \
	--no-resolv --no-hosts --addn-hosts="$hosts" --local=/lab/ --pid-file= --user="$(id -un)" \
	--log-facility="$work/dnsmasq.log" &
pid_dm=$!; pids+=("$pid_dm")

ready() { # port
	for _ in $(seq 50); do
		[ "$(dig @"$ADDR" -p "$1" +short +time=1 +tries=1 host1.lab A 2>/dev/null)" = 172.22.10.3 ] && return 0
		sleep 0.1
	done
	echo "dns.sh: server on port $1 not answering" >&2; return 1
}
ready "$port_mb"; ready "$port_dm"

# Both must give the same answers before their speed means anything.
answers() { # port dig-args...: "STATUS name class type rdata..." without TTLs
	local port=$1; shift
	dig @"$ADDR" -p "$port" +time=2 +tries=1 +noall +answer +comments "$@" |
		awk '/status:/ { s = $6; sub(",", "", s) } /^[^;]/ && NF >= 5 { $2 = ""; r = r " |" $0 } END { print s r }' |
		tr -s ' '
}
for q in "host7.lab A" "host7.lab AAAA" "-x 172.22.10.9" "nohost7.lab A"; do
	# shellcheck disable=SC2086
	a=$(answers "$port_mb" $q); b=$(answers "$port_dm" $q)
	if [ "$a" != "$b" ]; then
		echo "dns.sh: answers differ for '$q': metalboot '$a', dnsmasq '$b'" >&2
		exit 1
	fi
	echo "same answer: $q -> $a" >&2
done

run() { # name port
	dnsperf -s "$ADDR" -p "$2" -d "$queries" -l "$DURATION" -c "$CLIENTS" -q "$OUTSTANDING" >"$work/out" 2>&1
	local qps lost codes
	qps=$(awk '/Queries per second:/ {print $4}' "$work/out")
	lost=$(awk '/Queries lost:/ {print $3}' "$work/out")
	codes=$(sed -n 's/^ *Response codes: *//p' "$work/out")
	printf '%-10s %12.0f qps  lost %-8s %s\n' "$1" "$qps" "$lost" "$codes" >&2
	echo "$qps"
}

# Efficiency the load generator cannot cap: at fixed offered rates both
# servers keep up with, queries answered per second of server CPU (user +
# system, all threads, from /proc/PID/stat). The CPU time of a process that
# wakes for every few packets moves by tens of percent between runs on a
# shared VM, so each rate runs EFF_ROUNDS times, alternating the servers,
# and the best round of each is kept (other work only ever adds CPU time).
FIXED_QPS=${FIXED_QPS:-"2000 10000 30000"}
EFF_ROUNDS=${EFF_ROUNDS:-3}
TICK=$(getconf CLK_TCK)
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
eff() { # name port pid qps -> queries per CPU-second
	local t0 t1 done
	t0=$(ticks "$3")
	dnsperf -s "$ADDR" -p "$2" -d "$queries" -l "$DURATION" -c "$CLIENTS" -q "$OUTSTANDING" -Q "$4" >"$work/out.eff" 2>&1
	t1=$(ticks "$3")
	done=$(awk '/Queries completed:/ {print $3}' "$work/out.eff")
	awk -v n="$done" -v t="$((t1 - t0))" -v hz="$TICK" -v name="$1" -v q="$4" 'BEGIN{
		e = (t > 0 ? n * hz / t : 0); printf "%-10s %d queries at %s/s offered, %.2f CPU-s: %.0f queries per CPU-second\n", name, n, q, t / hz, e > "/dev/stderr"; printf "%.0f\n", e }'
}
for q in $FIXED_QPS; do
	best_mb=0 best_dm=0
	for ((r = 1; r <= EFF_ROUNDS; r++)); do
		e=$(eff metalboot "$port_mb" "$pid_mb" "$q"); best_mb=$(awk -v a="$best_mb" -v b="$e" 'BEGIN{print (b > a ? b : a)}')
		e=$(eff dnsmasq "$port_dm" "$pid_dm" "$q"); best_dm=$(awk -v a="$best_dm" -v b="$e" 'BEGIN{print (b > a ? b : a)}')
	done
	awk -v a="$best_mb" -v b="$best_dm" -v q="$q" 'BEGIN{
		printf "RESULT name=dns_queries_per_cpu_second_at_%s metalboot=%.0f peer=dnsmasq:%.0f ratio=%.2f\n", q, a, b, (b > 0 ? a/b : 0)}'
done

# Throughput: closed loop, after the fixed loads so that the heap the
# peak leaves behind (and the runtime returning it) is not in their CPU time.
echo "dnsperf: $(wc -l <"$queries") queries, ${DURATION}s x $ROUNDS rounds, -c $CLIENTS -q $OUTSTANDING; $(nproc) CPUs" >&2
sum_mb=0 sum_dm=0
for ((r = 1; r <= ROUNDS; r++)); do
	q=$(run metalboot "$port_mb"); sum_mb=$(awk -v a="$sum_mb" -v b="$q" 'BEGIN{print a+b}')
	q=$(run dnsmasq "$port_dm"); sum_dm=$(awk -v a="$sum_dm" -v b="$q" 'BEGIN{print a+b}')
done
kill "$pid_mb"; wait "$pid_mb" 2>/dev/null || true
kill "$pid_dm"; wait "$pid_dm" 2>/dev/null || true
pids=()
tail -1 "$work/dnsbench.log" >&2
awk -v a="$sum_mb" -v b="$sum_dm" -v n="$ROUNDS" 'BEGIN{
	printf "DNS qps (mean of %d): metalboot %.0f  dnsmasq %.0f  ratio %.2f\n", n, a/n, b/n, (b > 0 ? a/b : 0)}'
