#!/usr/bin/env bash
# TFTP benchmark: metalboot's tftpsrv side by side with tftpd-hpa (in.tftpd)
# and dnsmasq's TFTP server, in one run.
#
#   sudo internal/bench/tftp.sh            # from the repository root
#
# Everything runs inside a network namespace this script creates and deletes
# (loopback only): dnsmasq's TFTP server can only listen on port 69, and the
# tftp-hpa client needs an interface besides loopback to resolve addresses.
# Needs: root, iproute2, go, curl, tftp-hpa, atftp, tftpd-hpa, dnsmasq
# (Debian packages curl tftp-hpa atftp tftpd-hpa dnsmasq-base).
#
# Measures, per server:
#   - one 64 MiB file fetched by tftp-hpa (no options: 512-byte blocks), by
#     curl with blksize 1024 (GRUB's maximum) and 1468 (firmware's usual),
#     and by atftp asking for blksize 1468 and RFC 7440 windowsize 16 (as
#     EDK2 firmware can; tftpd-hpa and dnsmasq ignore windowsize and answer
#     lockstep): MB/s (1 MB = 10^6 bytes);
#   - a GRUB boot pair: a kernel (PAIR_KERNEL_KB, 13.5 MiB like Debian's
#     signed cloud kernel) then an initrd (PAIR_INITRD_KB, 2.4 MiB), fetched
#     one after the other the way GRUB without HTTP does (the Secure Boot
#     chain's signed GRUB: blksize 1024, no windowsize; curl): seconds for
#     the pair, as RESULT lines tftp_grub_pair_mbps;
#   - a boot storm: STORM (200) curl clients at once, each fetching a
#     1.5 MiB core.efi-sized file with blksize 1468: failures (exit status or
#     wrong checksum), wall time, aggregate MB/s, server peak RSS (VmHWM).
# metalboot runs with its defaults (8 blocks sent ahead to clients that do
# not negotiate windowsize, windowsize up to 64 for those that do), in strict
# lockstep (-send-ahead 1, what tftpd-hpa and dnsmasq do), and in
# single-port mode.
# Prints one table with ratios against tftpd-hpa and dnsmasq. Bounded: every
# client has a time limit; the whole run takes about two minutes.
set -euo pipefail

STORM=${STORM:-200}
BIG_MB=${BIG_MB:-64}
STORM_FILE_KB=${STORM_FILE_KB:-1536}
CLIENT_TIMEOUT=${CLIENT_TIMEOUT:-120}
PAIR_KERNEL_KB=${PAIR_KERNEL_KB:-13858}
PAIR_INITRD_KB=${PAIR_INITRD_KB:-2414}

for bin in ip go curl tftp atftp in.tftpd dnsmasq sha256sum; do
	command -v "$bin" >/dev/null || { echo "tftp.sh: $bin not found" >&2; exit 2; }
done
[ "$(id -u)" = 0 ] || { echo "tftp.sh: needs root (network namespace)" >&2; exit 2; }

repo=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d /tmp/tftpbench.XXXXXX)
ns=mbtftp-$$
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	sleep 0.5
	for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
	ip netns del "$ns" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

chmod 755 "$work"
mkdir -p "$work/root/grub/x86_64-efi" "$work/out"
chmod -R a+rX "$work/root"
head -c $((BIG_MB << 20)) /dev/urandom >"$work/root/big.bin"
head -c $((STORM_FILE_KB << 10)) /dev/urandom >"$work/root/grub/x86_64-efi/core.efi"
chmod a+r "$work/root/big.bin" "$work/root/grub/x86_64-efi/core.efi"
big_sum=$(sha256sum <"$work/root/big.bin" | cut -d' ' -f1)
core_sum=$(sha256sum <"$work/root/grub/x86_64-efi/core.efi" | cut -d' ' -f1)
mkdir -p "$work/root/assets"
head -c $((PAIR_KERNEL_KB << 10)) /dev/urandom >"$work/root/assets/vmlinuz"
head -c $((PAIR_INITRD_KB << 10)) /dev/urandom >"$work/root/assets/initrd.img"
chmod -R a+rX "$work/root/assets"
pair_sum=$(cat "$work/root/assets/vmlinuz" "$work/root/assets/initrd.img" | sha256sum | cut -d' ' -f1)
pair_bytes=$(((PAIR_KERNEL_KB + PAIR_INITRD_KB) << 10))
big_bytes=$((BIG_MB << 20))
core_bytes=$((STORM_FILE_KB << 10))

(cd "$repo" && go build -o "$work/metalboot-tftpd" ./tftpsrv/internal/tftpd)

ip netns add "$ns"
ip -n "$ns" link set lo up
# A non-loopback address inside the namespace for glibc's AI_ADDRCONFIG
# (tftp-hpa); best effort, not every kernel has dummy or veth.
if ip -n "$ns" link add d0 type dummy 2>/dev/null; then
	ip -n "$ns" addr add 192.0.2.1/24 dev d0 && ip -n "$ns" link set d0 up
elif ip -n "$ns" link add v0 type veth peer name v1 2>/dev/null; then
	ip -n "$ns" addr add 192.0.2.1/24 dev v0 && ip -n "$ns" link set v0 up && ip -n "$ns" link set v1 up
fi
nsexec() { ip netns exec "$ns" "$@"; }
# ip netns exec forks: run servers through a shell that records its own PID
# and then execs the server, so the PID we stop is the server's.
nsdaemon() { # pidfile cmd...
	local pidfile=$1
	shift
	ip netns exec "$ns" sh -c 'echo $$ >"$0"; exec "$@"' "$pidfile" "$@"
}

now() { date +%s.%N; }
mbps() { awk -v b="$1" -v s="$2" 'BEGIN { if (s > 0) printf "%.1f", b / s / 1e6; else print "n/a" }'; }

server_pid=
start_server() { # name
	local pf="$work/$1.pid"
	rm -f "$pf"
	case "$1" in
	metalboot) nsdaemon "$pf" "$work/metalboot-tftpd" -addr 127.0.0.1:69 -dir "$work/root" 2>"$work/$1.log" & ;;
	metalboot-lockstep) nsdaemon "$pf" "$work/metalboot-tftpd" -addr 127.0.0.1:69 -dir "$work/root" -send-ahead 1 -max-window -1 2>"$work/$1.log" & ;;
	metalboot-1port) nsdaemon "$pf" "$work/metalboot-tftpd" -addr 127.0.0.1:69 -dir "$work/root" -single-port 2>"$work/$1.log" & ;;
	tftpd-hpa) nsdaemon "$pf" in.tftpd -L -a 127.0.0.1:69 -s "$work/root" 2>"$work/$1.log" & ;;
	dnsmasq) nsdaemon "$pf" dnsmasq --keep-in-foreground --port=0 --enable-tftp --tftp-root="$work/root" \
		--listen-address=127.0.0.1 --bind-interfaces --tftp-max=1000 --conf-file=/dev/null \
		--pid-file= --log-facility="$work/$1.log" 2>&1 & ;;
	esac
	pids+=("$!")
	sleep 0.5
	server_pid=$(cat "$pf" 2>/dev/null || true)
	[ -n "$server_pid" ] && pids+=("$server_pid")
	if [ -z "$server_pid" ] || ! kill -0 "$server_pid" 2>/dev/null; then
		echo "tftp.sh: $1 did not start:" >&2
		cat "$work/$1.log" >&2
		exit 1
	fi
}
stop_server() { # stop by PID and wait (bounded) until it is gone
	local i
	kill "$server_pid" 2>/dev/null || true
	for i in $(seq 1 100); do
		kill -0 "$server_pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -9 "$server_pid" 2>/dev/null || true
}
peak_rss_kb() { awk '/VmHWM/ { print $2 }' "/proc/$server_pid/status" 2>/dev/null || echo "?"; }

# fetch_big client: prints seconds or FAIL
fetch_big() {
	local out="$work/out/big" t0 t1
	rm -f "$out"
	t0=$(now)
	case "$1" in
	tftp-hpa) nsexec timeout "$CLIENT_TIMEOUT" tftp -m binary 127.0.0.1 69 -c get big.bin "$out" >"$work/client.log" 2>&1 || true ;;
	curl-1024) nsexec timeout "$CLIENT_TIMEOUT" curl -sS --tftp-blksize 1024 -o "$out" tftp://127.0.0.1/big.bin >"$work/client.log" 2>&1 || true ;;
	curl-1468) nsexec timeout "$CLIENT_TIMEOUT" curl -sS --tftp-blksize 1468 -o "$out" tftp://127.0.0.1/big.bin >"$work/client.log" 2>&1 || true ;;
	atftp-w16) (cd "$work/out" && nsexec timeout "$CLIENT_TIMEOUT" atftp --option "blksize 1468" --option "windowsize 16" \
		-g -r big.bin -l "$out" 127.0.0.1 69 >"$work/client.log" 2>&1) || true ;;
	esac
	t1=$(now)
	if [ -f "$out" ] && [ "$(sha256sum <"$out" | cut -d' ' -f1)" = "$big_sum" ]; then
		awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }'
	else
		echo FAIL
	fi
}

# fetch_pair: the kernel, then the initrd, as GRUB fetches them (blksize
# 1024, lockstep); prints seconds or FAIL
fetch_pair() {
	local t0 t1 f
	rm -f "$work/out/vmlinuz" "$work/out/initrd.img"
	t0=$(now)
	for f in vmlinuz initrd.img; do
		nsexec timeout "$CLIENT_TIMEOUT" curl -sS --tftp-blksize 1024 -o "$work/out/$f" "tftp://127.0.0.1/assets/$f" >"$work/client.log" 2>&1 || true
	done
	t1=$(now)
	if [ "$(cat "$work/out/vmlinuz" "$work/out/initrd.img" 2>/dev/null | sha256sum | cut -d' ' -f1)" = "$pair_sum" ]; then
		awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }'
	else
		echo FAIL
	fi
}

# storm: prints "failures seconds"
storm() {
	rm -rf "$work/out/storm" && mkdir -p "$work/out/storm"
	local t0 t1 fails=0 i
	t0=$(now)
	seq 1 "$STORM" | nsexec xargs -P "$STORM" -I{} timeout "$CLIENT_TIMEOUT" \
		curl -s --tftp-blksize 1468 -o "$work/out/storm/{}" tftp://127.0.0.1/grub/x86_64-efi/core.efi \
		>/dev/null 2>&1 || true
	t1=$(now)
	for i in $(seq 1 "$STORM"); do
		if [ ! -f "$work/out/storm/$i" ] || [ "$(sha256sum <"$work/out/storm/$i" | cut -d' ' -f1)" != "$core_sum" ]; then
			fails=$((fails + 1))
		fi
	done
	echo "$fails $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')"
}

servers=(metalboot metalboot-lockstep metalboot-1port tftpd-hpa dnsmasq)
clients=(tftp-hpa curl-1024 curl-1468 atftp-w16)
declare -A big storm_fail storm_secs rss pair
for s in "${servers[@]}"; do
	start_server "$s"
	for c in "${clients[@]}"; do
		big[$s,$c]=$(fetch_big "$c")
	done
	pair[$s]=$(fetch_pair)
	read -r storm_fail[$s] storm_secs[$s] < <(storm)
	rss[$s]=$(peak_rss_kb)
	stop_server
done

echo
echo "TFTP benchmark $(date -u +%Y-%m-%dT%H:%MZ) on $(nproc) cores, $(uname -r); ${BIG_MB} MiB file; storm: $STORM x $((core_bytes >> 10)) KiB, curl blksize 1468"
printf "%-14s" server
for c in "${clients[@]}"; do printf " %14s" "$c MB/s"; done
printf " %12s %10s %11s %12s\n" "storm fails" "storm s" "storm MB/s" "peak RSS KiB"
for s in "${servers[@]}"; do
	printf "%-14s" "$s"
	for c in "${clients[@]}"; do
		v=${big[$s,$c]}
		[ "$v" = FAIL ] && printf " %14s" FAIL || printf " %14s" "$(mbps "$big_bytes" "$v")"
	done
	printf " %12s %10s %11s %12s\n" "${storm_fail[$s]}" "${storm_secs[$s]}" \
		"$(mbps $((STORM * core_bytes)) "${storm_secs[$s]}")" "${rss[$s]}"
done
echo
ratio() { # a b: a's speed relative to b's, from seconds (b/a)
	awk -v a="$1" -v b="$2" 'BEGIN { if (a == "FAIL" || b == "FAIL" || a <= 0) print "n/a"; else printf "%.2fx", b / a }'
}
for m in metalboot metalboot-lockstep metalboot-1port; do
	for peer in tftpd-hpa dnsmasq; do
		printf "%-28s" "$m vs $peer:"
		for c in "${clients[@]}"; do printf " %s %s" "$c" "$(ratio "${big[$m,$c]}" "${big[$peer,$c]}")"; done
		printf " storm %s\n" "$(ratio "${storm_secs[$m]}" "${storm_secs[$peer]}")"
	done
done
echo
echo "GRUB boot pair (kernel $PAIR_KERNEL_KB KiB + initrd $PAIR_INITRD_KB KiB, curl blksize 1024, no windowsize): seconds"
for s in "${servers[@]}"; do printf "  %-20s %s\n" "$s" "${pair[$s]}"; done
pair_mbps() { [ "$1" = FAIL ] && echo FAIL || mbps "$pair_bytes" "$1"; }
for m in metalboot metalboot-lockstep; do
	for peer in tftpd-hpa dnsmasq; do
		a=$(pair_mbps "${pair[$m]}") b=$(pair_mbps "${pair[$peer]}")
		name=tftp_grub_pair_mbps
		[ "$m" = metalboot-lockstep ] && name=tftp_grub_pair_mbps_lockstep
		echo "RESULT name=$name metalboot=$a peer=$peer:$b ratio=$(awk -v a="$a" -v b="$b" 'BEGIN { if (a ~ /^[0-9.]+$/ && b ~ /^[0-9.]+$/ && b > 0) printf "%.2f", a / b; else print "n/a" }')"
	done
done
