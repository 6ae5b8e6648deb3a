package etcdstore_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/metalboot/metalboot/dhcpsrv/hwaddr"
	"github.com/metalboot/metalboot/internal/etcdtest"
	"github.com/metalboot/metalboot/internal/netns"
)

// TestBenchActiveActive is a benchmark, run only with METALBOOT_BENCH=1
// (internal/bench/README.md has the table and the command): DORA/s that
// perfdhcp (broadcasting as a relay agent, fresh MACs per step) gets from
// one dhcpsrv on its file journal, one and two on a 3-member etcd, and a
// Kea 2.2 HA pair (libdhcp_ha.so load-balancing + libdhcp_lease_cmds.so,
// multi-threaded, memfile), each swept over increasing offered loads; and
// each pair's failover time: how long after kill -9 of one server a
// client on the wire is answered again.
func TestBenchActiveActive(t *testing.T) {
	if os.Getenv("METALBOOT_BENCH") == "" {
		t.Skip("benchmark: set METALBOOT_BENCH=1 (see internal/bench/README.md)")
	}
	netns.Need(t, "perfdhcp", "kea-dhcp4")
	rates := []int{50, 100, 200, 400, 800}
	if r := os.Getenv("RATES"); r != "" {
		rates = nil
		for _, f := range strings.Fields(r) {
			n, err := strconv.Atoi(f)
			require.NoError(t, err)
			rates = append(rates, n)
		}
	}
	step := 5 * time.Second
	c := etcdtest.Start(t, 3)

	type result struct {
		name               string
		sustained, peak    float64
		failover           time.Duration
		hasFailover, loads string
	}
	var results []result
	for i, setup := range []string{"journal-1", "etcd-1", "etcd-2", "kea-ha-2"} {
		t.Run(setup, func(t *testing.T) {
			srvA, srvB, perf, wire := pairLab(t)
			prefix := fmt.Sprintf("/bench%d/", i)
			var kill func()
			switch setup {
			case "journal-1":
				startServer(t, srvA, "10.99.0.1", c, prefix+" store=journal dir="+t.TempDir(), func(string, string) {})
			case "etcd-1":
				startServer(t, srvA, "10.99.0.1", c, prefix, func(string, string) {})
			case "etcd-2":
				a := startServer(t, srvA, "10.99.0.1", c, prefix, func(string, string) {})
				startServer(t, srvB, "10.99.0.2", c, prefix, func(string, string) {})
				kill = a.kill
			case "kea-ha-2":
				kill = startKeaPair(t, srvA, srvB)
			}
			r := result{name: setup}
			var loads []string
			for k, rate := range rates {
				got, drops := perfRun(t, perf, rate, step, k+10*i)
				loads = append(loads, fmt.Sprintf("%d→%.0f", rate, got))
				if got > r.peak {
					r.peak = got
				}
				if drops <= 0.01 && got > r.sustained {
					r.sustained = got
				}
			}
			r.loads = strings.Join(loads, " ")
			if kill != nil {
				r.failover = failover(t, wire, perf, kill, 100+i)
				r.hasFailover = "yes"
			}
			t.Logf("%s: sustained %.0f DORA/s, peak %.0f; offered→got %s; failover %v", r.name, r.sustained, r.peak, r.loads, r.failover)
			results = append(results, r)
		})
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\n| setup | sustained DORA/s (≤1%% unanswered) | peak DORA/s | failover after kill -9 |\n|---|---|---|---|\n")
	for _, r := range results {
		fo := "—"
		if r.hasFailover != "" {
			fo = r.failover.Round(10 * time.Millisecond).String()
		}
		fmt.Fprintf(&b, "| %s | %.0f | %.0f | %s |\n", r.name, r.sustained, r.peak, fo)
	}
	t.Log(b.String())
	// RESULT lines for internal/bench/run (etcd.sh), on stdout.
	by := map[string]result{}
	for _, r := range results {
		by[r.name] = r
	}
	res := func(name string, a, b float64, peer string) {
		ratio := "n/a"
		if b > 0 {
			ratio = fmt.Sprintf("%.2f", a/b)
		}
		fmt.Printf("RESULT name=%s metalboot=%.2f peer=%s:%.2f ratio=%s\n", name, a, peer, b, ratio)
	}
	res("etcd_pair_dora_per_s", by["etcd-2"].sustained, by["kea-ha-2"].sustained, "kea-ha")
	res("etcd_pair_failover_s", by["etcd-2"].failover.Seconds(), by["kea-ha-2"].failover.Seconds(), "kea-ha")
	res("etcd_one_server_dora_per_s", by["etcd-1"].sustained, by["journal-1"].sustained, "journal")
}

var (
	perfSent = regexp.MustCompile(`(?s)DISCOVER-OFFER\*+\s*sent packets: (\d+)`)
	perfAck  = regexp.MustCompile(`(?s)REQUEST-ACK\*+\s*sent packets: (\d+)\s*received packets: (\d+)`)
)

// perfRun offers rate DORA/s for d from perf and returns the ACKs per
// second and the share of REQUESTs unanswered.
func perfRun(t *testing.T, perf *netns.NS, rate int, d time.Duration, seed int) (float64, float64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d+30*time.Second)
	defer cancel()
	secs := int(d / time.Second)
	out, _ := perf.Command(ctx, "perfdhcp", "-4", "-l", "eth0", "-r", strconv.Itoa(rate), "-R", "1000000",
		"-p", strconv.Itoa(secs), "-s", strconv.Itoa(seed), "-W", "2000000").CombinedOutput()
	m := perfAck.FindStringSubmatch(string(out))
	if m == nil || perfSent.FindStringSubmatch(string(out)) == nil {
		t.Logf("perfdhcp at %d/s: no statistics:\n%s", rate, out)
		return 0, 1
	}
	sent, _ := strconv.ParseFloat(m[1], 64)
	acks, _ := strconv.ParseFloat(m[2], 64)
	drops := 1.0
	if sent > 0 {
		drops = (sent - acks) / sent
	}
	t.Logf("perfdhcp at %d/s: %v REQUESTs, %v ACKs", rate, sent, acks)
	return acks / d.Seconds(), drops
}

// failover runs perfdhcp at a load every setup sustains and a wire
// client, kills one server, and returns how long the wire client waited
// for its next ACK.
func failover(t *testing.T, wire, perf *netns.NS, kill func(), seed int) time.Duration {
	t.Helper()
	conn := wireConn(t, wire)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	pd := perf.Command(ctx, "perfdhcp", "-4", "-l", "eth0", "-r", "30", "-R", "1000000", "-s", strconv.Itoa(seed), "-p", "30")
	require.NoError(t, pd.Start())
	defer func() { _ = syscall.Kill(-pd.Process.Pid, syscall.SIGKILL); _ = pd.Wait() }()
	n := 0
	exchange := func() bool {
		n++
		_, ok := broadcastDORA(conn, hwaddr.MAC{2, 0xfe, byte(seed), 0, byte(n >> 8), byte(n)}, 500*time.Millisecond)
		return ok
	}
	before := 0
	for range 20 { // both up: a few exchanges first
		if exchange() {
			before++
		}
	}
	t.Logf("wire client before the kill: %d of 20 exchanges ACKed", before)
	killed := time.Now()
	kill()
	for time.Since(killed) < 60*time.Second {
		// Fresh clients after the kill: half of them hash to the dead
		// server in Kea's load balancing until its partner takes over.
		okAll := true
		for range 4 {
			okAll = exchange() && okAll
		}
		if okAll {
			return time.Since(killed)
		}
	}
	return -1
}

// startKeaPair runs a Kea HA pair (load-balancing) in srvA and srvB and
// returns a function that kills the first with SIGKILL.
func startKeaPair(t *testing.T, srvA, srvB *netns.NS) func() {
	t.Helper()
	hooks := "/usr/lib/x86_64-linux-gnu/kea/hooks"
	var procs []*serverProc
	for i, ns := range []*netns.NS{srvA, srvB} {
		dir := t.TempDir()
		name := fmt.Sprintf("server%d", i+1)
		cfg := fmt.Sprintf(`{ "Dhcp4": {
  "interfaces-config": { "interfaces": [ "eth0" ], "dhcp-socket-type": "raw" },
  "lease-database": { "type": "memfile", "persist": true, "name": "%s/leases.csv", "lfc-interval": 0 },
  "valid-lifetime": 3600,
  "multi-threading": { "enable-multi-threading": true, "thread-pool-size": 4, "packet-queue-size": 64 },
  "hooks-libraries": [
    { "library": "%s/libdhcp_lease_cmds.so" },
    { "library": "%s/libdhcp_ha.so", "parameters": { "high-availability": [ {
      "this-server-name": "%s", "mode": "load-balancing",
      "heartbeat-delay": 1000, "max-response-delay": 2000, "max-ack-delay": 1000, "max-unacked-clients": 0,
      "multi-threading": { "enable-multi-threading": true, "http-dedicated-listener": true, "http-listener-threads": 2, "http-client-threads": 2 },
      "peers": [
        { "name": "server1", "url": "http://10.99.0.1:8001/", "role": "primary", "auto-failover": true },
        { "name": "server2", "url": "http://10.99.0.2:8001/", "role": "secondary", "auto-failover": true } ] } ] } } ],
  "subnet4": [ { "subnet": "10.99.0.0/16", "pools": [ { "pool": "10.99.1.0 - 10.99.250.255" } ] } ],
  "loggers": [ { "name": "kea-dhcp4", "output_options": [ { "output": "%s/kea.log" } ], "severity": "WARN" } ]
} }`, dir, hooks, hooks, name, dir)
		file := filepath.Join(dir, "kea.json")
		require.NoError(t, os.WriteFile(file, []byte(cfg), 0o644))
		cmd := ns.Command(context.Background(), "kea-dhcp4", "-c", file)
		cmd.Env = append(os.Environ(), "KEA_PIDFILE_DIR="+dir, "KEA_LOCKFILE_DIR="+dir)
		var out strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &out
		require.NoError(t, cmd.Start())
		p := &serverProc{cmd: cmd, done: make(chan struct{})}
		go func() { _ = cmd.Wait(); close(p.done) }()
		procs = append(procs, p)
		t.Cleanup(func() {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-p.done
			if t.Failed() {
				log, _ := os.ReadFile(filepath.Join(dir, "kea.log"))
				t.Logf("%s output:\n%s\n%s", name, out.String(), log)
			}
		})
	}
	// The pair negotiates (waiting → syncing → load-balancing) before it
	// answers; give it the time its heartbeats need.
	time.Sleep(5 * time.Second)
	return func() {
		_ = syscall.Kill(-procs[0].cmd.Process.Pid, syscall.SIGKILL)
		<-procs[0].done
	}
}
