#!/usr/bin/env bash
# Growth: what metalboot costs as a lab grows (internal/bench/growth):
# inventories of 100, 10 000 and 100 000 machines (load, reload and its CPU
# time, heap, /grub and /ignition p99 at a fixed load) and DHCP start-up
# with 100 000 leases in the journal. Everything in one process on
# 127.0.0.1; no peer (matchbox has no reload, and reads files per request).
#
#   internal/bench/growth.sh            (about 2 minutes)
#   SIZES=100,10000 LEASES=0 internal/bench/growth.sh
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
go run ./internal/bench/growth -n "${SIZES:-100,10000,100000}" -leases "${LEASES:-100000}"
