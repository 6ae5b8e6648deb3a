#!/usr/bin/env bash
# Active-active DHCP on etcd (issue #21): DORA/s that perfdhcp gets from one
# dhcpsrv on its file journal, one and two on a 3-member etcd (Debian's
# etcd-server on 127.0.0.1), and a Kea HA pair (load-balancing, memfile),
# each swept over increasing offered loads, plus each pair's failover time
# after kill -9 of one server. Runs the Go test TestBenchActiveActive
# (dhcpsrv/etcdstore/bench_linux_test.go) in throw-away namespaces.
#
#   sudo internal/bench/etcd.sh                 (about 3 minutes)
#   RATES="100 400" sudo internal/bench/etcd.sh
#
# Needs root, iproute2, Go, perfdhcp (kea-admin), kea-dhcp4-server (with
# its HA and lease_cmds hooks) and etcd (etcd-server).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
METALBOOT_BENCH=1 go test -count=1 -v -timeout 20m -run '^TestBenchActiveActive$' ./dhcpsrv/etcdstore
