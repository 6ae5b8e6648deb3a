# internal/bench/lib.sh: what the HTTP-side bench scripts (http.sh,
# assets.sh) share. Sourced, not run: `. "$(dirname "$0")/lib.sh"`.

# matchbox_cache: sets CACHE (default /var/cache/metalboot-bench, or
# $TMPDIR/metalboot-bench-cache when that is not writable) and MATCHBOX_BIN,
# the matchbox binary http.sh builds once from its Go module.
MATCHBOX_VERSION=v0.11.0
matchbox_cache() {
	CACHE=${CACHE:-/var/cache/metalboot-bench}
	if ! mkdir -p "$CACHE" 2>/dev/null || [ ! -w "$CACHE" ]; then
		CACHE=${TMPDIR:-/tmp}/metalboot-bench-cache
		mkdir -p "$CACHE"
	fi
	MATCHBOX_BIN=${MATCHBOX_BIN:-$CACHE/matchbox-$MATCHBOX_VERSION}
}

# scratch NAME: sets TMP to a new directory and PIDS to an empty list; on
# exit every PID in PIDS (the servers the script started, and only those)
# is stopped and waited for, and TMP is removed.
scratch() {
	TMP=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")
	PIDS=()
	trap scratch_cleanup EXIT
	trap 'exit 130' INT TERM
}
scratch_cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$TMP"
}
