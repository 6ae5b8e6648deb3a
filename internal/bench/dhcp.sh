#!/usr/bin/env bash
# DHCP benchmark: Kea's perfdhcp against metalboot's dhcpsrv, dnsmasq and
# kea-dhcp4, one after the other, in the same throw-away network namespaces
# and the same run, each with persistent leases on. Prints DORA/s per server
# and metalboot's ratios.
#
#   sudo internal/bench/dhcp.sh [seconds-per-step]   (default 3; about 8 minutes in all)
#   RATES="500 1000 2000" ROUNDS=3 SERVERS="metalboot kea" sudo internal/bench/dhcp.sh
#
# Needs root, iproute2, Go, and the Debian packages kea-admin (perfdhcp),
# kea-dhcp4-server and dnsmasq. Touches no host interface: everything runs in
# namespaces mbb<pid>-srv / mbb<pid>-cli, removed on exit. Only processes this
# script started are stopped, by PID.
#
# Leases: metalboot writes its journal and fsyncs before every ACK (group
# commit); dnsmasq rewrites its lease file; Kea appends to its memfile CSV
# (persist: true). perfdhcp runs as a relay agent (giaddr 10.99.0.2) with
# fresh client MACs per step, over a pool of 64000 addresses; each server is
# swept over increasing offered loads and reported with its best rate at
# <= 1% unanswered REQUESTs ("sustained") and its best rate at any load.
set -euo pipefail

DUR=${1:-3}
# The top is 5000: perfdhcp on the same two cores cannot offer much more
# (every server "sustained" the same 4700-4800 at 6000 offered), and the
# leases of a round, every step's fresh MACs, must fit the 64 000-address
# pool.
RATES=${RATES:-"250 500 1000 2000 3000 4000 5000"}
# Offered loads at which each server's CPU time per exchange is reported
# (server CPU from /proc/PID/stat, all threads): an efficiency the load
# generator cannot cap, since at these loads every server keeps up.
CPU_RATES=${CPU_RATES:-"250 1000"}
# Seconds per step at those loads: a server's CPU time at 250/s for 3 s is
# a quarter of a second, read in ticks of 10 ms and moved by tens of
# percent by other work on a shared VM, so these steps run longer.
EFF_DUR=${EFF_DUR:-10}
TICK=$(getconf CLK_TCK)
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
for p in ip perfdhcp dnsmasq kea-dhcp4 go; do
	command -v "$p" >/dev/null || { echo "dhcp.sh: $p not found (apt-get install kea-admin kea-dhcp4-server dnsmasq)" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "dhcp.sh: must run as root (network namespaces)" >&2; exit 1; }

TMP=$(mktemp -d /tmp/mb-dhcp-bench.XXXXXX)
SRV=mbb$$-srv
CLI=mbb$$-cli
SERVER_PID= # the one server running now (reaped PIDs are never signalled)
cleanup() {
	if [ -n "$SERVER_PID" ]; then
		kill "$SERVER_PID" 2>/dev/null || true
		sleep 0.2
		kill -9 "$SERVER_PID" 2>/dev/null || true
	fi
	ip netns del "$SRV" 2>/dev/null || true
	ip netns del "$CLI" 2>/dev/null || true
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ip netns add "$SRV"
ip netns add "$CLI"
ip -n "$SRV" link set lo up
ip -n "$CLI" link set lo up
ip -n "$SRV" link add br0 type bridge
ip -n "$SRV" link set br0 up
ip -n "$SRV" addr add 10.99.0.1/16 dev br0
ip -n "$SRV" link add vs0 type veth peer name vc0
ip -n "$SRV" link set vc0 netns "$CLI"
ip -n "$CLI" link set vc0 name eth0
ip -n "$SRV" link set vs0 master br0
ip -n "$SRV" link set vs0 up
ip -n "$CLI" link set eth0 up
ip -n "$CLI" addr add 10.99.0.2/16 dev eth0

echo "building dhcpsrvd ..." >&2
(cd "$ROOT" && go build -o "$TMP/dhcpsrvd" ./dhcpsrv/internal/cmd/dhcpsrvd)

cat >"$TMP/kea.json" <<JSON
{ "Dhcp4": {
  "interfaces-config": { "interfaces": [ "br0" ], "dhcp-socket-type": "udp" },
  "lease-database": { "type": "memfile", "persist": true, "name": "$TMP/kea-leases.csv", "lfc-interval": 0 },
  "valid-lifetime": 3600,
  "subnet4": [ { "subnet": "10.99.0.0/16", "pools": [ { "pool": "10.99.1.0 - 10.99.250.255" } ],
                 "option-data": [ { "name": "routers", "data": "10.99.0.1" } ] } ],
  "loggers": [ { "name": "kea-dhcp4", "output_options": [ { "output": "$TMP/kea.log" } ], "severity": "WARN" } ]
} }
JSON

start() { # name, command...
	local name=$1; shift
	ip netns exec "$SRV" "$@" >"$TMP/$name.out" 2>"$TMP/$name.err" &
	SERVER_PID=$!
	sleep 1.5
	kill -0 "$SERVER_PID" 2>/dev/null || { echo "dhcp.sh: $name did not start:" >&2; cat "$TMP/$name.err" >&2; exit 1; }
}
stop() { # name: records the server's peak resident memory (VmHWM) first
	local kb
	kb=$(awk '/^VmHWM:/ {print $2}' "/proc/$SERVER_PID/status" 2>/dev/null || echo 0)
	if [ "${kb:-0}" -gt "${RSS_OF[$1]:-0}" ]; then RSS_OF[$1]=$kb; fi
	kill "$SERVER_PID" 2>/dev/null || true
	wait "$SERVER_PID" 2>/dev/null || true
	SERVER_PID=
}

declare -A BEST_OF PEAK_OF RSS_OF EFF_OF
# cpu_ticks: user+system CPU ticks of the running server so far.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$SERVER_PID/stat" 2>/dev/null || echo 0; }
# sys_ticks: the system part of it.
sys_ticks() { awk '{print $15}' "/proc/$SERVER_PID/stat" 2>/dev/null || echo 0; }
# run NAME: offered-load sweep; BEST = highest achieved DORA/s with at most
# 1% of REQUESTs unanswered, PEAK = highest achieved at any load. The sweep
# stops once a step loses more than 5%.
run() {
	local name=$1 i=0 out rate drops t0 t1 s0 s1 eff
	for r in $RATES; do
		i=$((i + 1))
		local d=$DUR
		if [[ " $CPU_RATES " == *" $r "* ]]; then d=$EFF_DUR; fi
		t0=$(cpu_ticks) s0=$(sys_ticks)
		out=$(ip netns exec "$CLI" timeout $((d + 15)) perfdhcp -4 -l eth0 -r "$r" -R 60000 -p "$d" -W 500000 \
			-b "mac=$(printf '02:00:%02x:00:00:00' "$i")" 10.99.0.1 2>&1 || true)
		t1=$(cpu_ticks) s1=$(sys_ticks)
		echo "$out" >"$TMP/$name.$r.perfdhcp"
		rate=$(echo "$out" | awk '/^Rate:/ {print $2; exit}')
		drops=$(echo "$out" | awk '/REQUEST-ACK/ {f=1} f && /drops ratio/ {print $3; exit}')
		[ -n "$rate" ] && [ -n "$drops" ] || { echo "dhcp.sh: no perfdhcp result for $name at $r/s:" >&2; echo "$out" >&2; exit 1; }
		printf '  %-9s offered %6s/s: %8.0f DORA/s, %6s%% REQUEST drops, server CPU %ss (system %ss)\n' "$name" "$r" "$rate" "$drops" \
			"$(echo "($t1 - $t0) / $TICK" | bc -l | xargs printf '%.2f')" "$(echo "($s1 - $s0) / $TICK" | bc -l | xargs printf '%.2f')" >&2
		if [[ " $CPU_RATES " == *" $r "* ]] && [ $((t1 - t0)) -gt 0 ]; then
			# DORA exchanges completed per second of server CPU.
			eff=$(echo "$rate * $d * $TICK / ($t1 - $t0)" | bc -l)
			if [ "$(echo "$eff > ${EFF_OF[$name,$r]:-0}" | bc)" = 1 ]; then EFF_OF[$name,$r]=$eff; fi
		fi
		if [ "$(echo "$rate > ${PEAK_OF[$name]}" | bc)" = 1 ]; then PEAK_OF[$name]=$rate; fi
		if [ "$(echo "$drops <= 1" | bc)" = 1 ] && [ "$(echo "$rate > ${BEST_OF[$name]}" | bc)" = 1 ]; then BEST_OF[$name]=$rate; fi
		if [ "$(echo "$drops > 5" | bc)" = 1 ]; then break; fi
	done
}

# serve NAME ROUND: start server NAME on a fresh lease database, sweep, stop.
serve() {
	local name=$1 round=$2
	case $name in
	metalboot)
		# DHCPSRVD_ARGS: extra flags, e.g. "-cpuprofile /tmp/dhcp.cpu".
		# shellcheck disable=SC2086
		start metalboot "$TMP/dhcpsrvd" ${DHCPSRVD_ARGS:-} -i br0 -server-ip 10.99.0.1 -subnet 10.99.0.0/16,10.99.1.0,10.99.250.255,10.99.0.1 \
			-leases "$TMP/mb-leases.$round" ;;
	metalboot-1s)
		# The journal written before each ACK and fsynced within 1 s
		# (JournalOptions.SyncInterval, labserver dhcp.lease_sync: 1s): a
		# killed server loses nothing, a power cut the last second. Kea's
		# memfile and dnsmasq never fsync, so this is their durability.
		# shellcheck disable=SC2086
		start metalboot-1s "$TMP/dhcpsrvd" ${DHCPSRVD_ARGS:-} -sync-interval 1s -i br0 -server-ip 10.99.0.1 \
			-subnet 10.99.0.0/16,10.99.1.0,10.99.250.255,10.99.0.1 -leases "$TMP/mb1s-leases.$round" ;;
	dnsmasq)
		start dnsmasq dnsmasq --keep-in-foreground --port=0 --interface=br0 --bind-interfaces --no-ping \
			--dhcp-range=10.99.1.0,10.99.250.255,255.255.0.0,1h --dhcp-option=3,10.99.0.1 --dhcp-lease-max=100000 \
			--quiet-dhcp --log-facility="$TMP/dnsmasq.log" --dhcp-authoritative --dhcp-leasefile="$TMP/dnsmasq.leases.$round" \
			--pid-file="$TMP/dnsmasq.pid" --no-resolv --no-hosts ;;
	kea)
		sed "s|kea-leases.csv|kea-leases.$round.csv|" "$TMP/kea.json" >"$TMP/kea.$round.json"
		start kea env KEA_LOCKFILE_DIR="$TMP" KEA_PIDFILE_DIR="$TMP" kea-dhcp4 -c "$TMP/kea.$round.json" ;;
	esac
	run "$name"
	stop "$name"
}

# Rounds interleave the servers so that load from other processes on the
# machine hits them alike; each server's best round is reported.
SERVERS=${SERVERS:-"metalboot metalboot-1s dnsmasq kea"}
ROUNDS=${ROUNDS:-2}
for s in metalboot metalboot-1s dnsmasq kea; do BEST_OF[$s]=0; PEAK_OF[$s]=0; RSS_OF[$s]=0; done
for round in $(seq "$ROUNDS"); do
	echo "round $round" >&2
	for s in $SERVERS; do serve "$s" "$round"; done
done

printf '\nperfdhcp DORA/s, best of %s rounds, %ss per load step (%s/s), %s, %s cores, load average %s\n' \
	"$ROUNDS" "$DUR" "${RATES// /,}" "$(date -u +%FT%TZ)" "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-10s %22s %10s %14s\n' server 'sustained (<=1% drops)' 'peak' 'peak RSS MiB'
for s in metalboot metalboot-1s dnsmasq kea; do
	printf '%-10s %22.0f %10.0f %14.1f\n' "$s" "${BEST_OF[$s]}" "${PEAK_OF[$s]}" "$(echo "${RSS_OF[$s]} / 1024" | bc -l)"
done
ratio() { if [ "$(echo "$2 > 0" | bc)" = 1 ]; then printf '%.2f' "$(echo "$1 / $2" | bc -l)"; else echo n/a; fi; }
echo "ratio metalboot/dnsmasq: sustained $(ratio "${BEST_OF[metalboot]}" "${BEST_OF[dnsmasq]}"), peak $(ratio "${PEAK_OF[metalboot]}" "${PEAK_OF[dnsmasq]}")"
echo "ratio metalboot/kea:     sustained $(ratio "${BEST_OF[metalboot]}" "${BEST_OF[kea]}"), peak $(ratio "${PEAK_OF[metalboot]}" "${PEAK_OF[kea]}")"
printf '\nDORA per server CPU-second at a fixed offered load (best round; higher is better)\n'
# (rows named "<server>:" so that internal/bench/run's parser of the
# DORA/s table above does not take them for it)
printf '%-13s' server:; for r in $CPU_RATES; do printf ' %14s' "at $r/s"; done; echo
for s in metalboot metalboot-1s dnsmasq kea; do
	printf '%-13s' "$s:"; for r in $CPU_RATES; do printf ' %14.0f' "${EFF_OF[$s,$r]:-0}"; done; echo
done
for r in $CPU_RATES; do
	for peer in kea dnsmasq; do
		echo "RESULT name=dhcp_dora_per_cpu_second_at_$r metalboot=$(printf '%.0f' "${EFF_OF[metalboot,$r]:-0}") peer=$peer:$(printf '%.0f' "${EFF_OF[$peer,$r]:-0}") ratio=$(ratio "${EFF_OF[metalboot,$r]:-0}" "${EFF_OF[$peer,$r]:-0}")"
		echo "RESULT name=dhcp_dora_per_cpu_second_at_${r}_sync1s metalboot=$(printf '%.0f' "${EFF_OF[metalboot-1s,$r]:-0}") peer=$peer:$(printf '%.0f' "${EFF_OF[$peer,$r]:-0}") ratio=$(ratio "${EFF_OF[metalboot-1s,$r]:-0}" "${EFF_OF[$peer,$r]:-0}")"
	done
done
mib() { printf '%.1f' "$(echo "${RSS_OF[$1]} / 1024" | bc -l)"; }
echo "RESULT name=dhcp_peak_rss_mib metalboot=$(mib metalboot) peer=dnsmasq:$(mib dnsmasq) ratio=$(ratio "${RSS_OF[metalboot]}" "${RSS_OF[dnsmasq]}")"
echo "RESULT name=dhcp_peak_rss_mib metalboot=$(mib metalboot) peer=kea:$(mib kea) ratio=$(ratio "${RSS_OF[metalboot]}" "${RSS_OF[kea]}")"
