// Package etcdtest is a test harness that runs a real etcd cluster (Debian's
// etcd-server, the `etcd` program in PATH) on 127.0.0.1 for the duration of
// a test: every member gets its own ports and a temporary data directory,
// and is stopped by its PID when the test ends (nothing is killed by
// name).
//
//	c := etcdtest.Start(t, 3)   // skips unless `etcd` is installed
//	cli := c.Client(t)          // a clientv3.Client on all members
//	c.Kill(0)                   // kill -9 member 0
//	c.Restart(0)                // same data directory, same ports
//
// The members listen only on 127.0.0.1, so the harness follows the
// project's network-safety rule; tests run it inside .ci/isolated.
package etcdtest

import (
	"bytes"
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Program is the etcd server binary the harness runs.
const Program = "etcd"

// Member is one etcd process of a [Cluster].
type Member struct {
	// Name is the member name (m0, m1 …).
	Name string
	// ClientURL is where clients connect (http://127.0.0.1:port).
	ClientURL string
	// PeerURL is where the other members connect.
	PeerURL string
	// DataDir is the member's data directory (kept across Restart).
	DataDir string
	// LogFile receives the member's output.
	LogFile string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// Cluster is a running etcd cluster made by [Start].
type Cluster struct {
	// Members are the cluster's members, in order.
	Members   []*Member
	t         testing.TB
	initial   string
	certs     *Certs      // nil: clients over plain http
	clientTLS *tls.Config // for certs
}

// Need skips the test unless the etcd program is in PATH.
func Need(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath(Program)
	if err != nil {
		t.Skipf("etcdtest: %s not found in PATH (Debian: apt-get install etcd-server): %v", Program, err)
	}
	return p
}

// freePorts returns n distinct free TCP ports on 127.0.0.1.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// Start runs an n-member etcd cluster on 127.0.0.1 and waits until every
// member answers; the cluster is stopped (by PID) and its data removed
// when the test ends. It skips the test when etcd is not installed and
// fails it when the cluster does not come up within a minute.
func Start(t testing.TB, n int) *Cluster {
	t.Helper()
	Need(t)
	c, err := StartDir(t.TempDir(), n)
	if err != nil {
		t.Fatalf("etcdtest: %v", err)
	}
	c.t = t
	t.Cleanup(c.Stop)
	return c
}

// StartDir is Start for code that has no testing.TB (TestMain, an
// Example's setup): the members keep their data under dir, and the caller
// calls Stop. It returns an error when etcd is missing or the cluster
// does not come up within a minute.
func StartDir(dir string, n int) (*Cluster, error) { return startDir(dir, n, nil) }

func startDir(dir string, n int, certs *Certs) (*Cluster, error) {
	if _, err := exec.LookPath(Program); err != nil {
		return nil, err
	}
	ports, err := freePorts(2 * n)
	if err != nil {
		return nil, fmt.Errorf("free ports: %w", err)
	}
	c := &Cluster{certs: certs}
	scheme := "http"
	if certs != nil {
		scheme = "https"
		if c.clientTLS, err = certs.ClientTLS(); err != nil {
			return nil, err
		}
	}
	var initial []string
	for i := range n {
		m := &Member{
			Name:      fmt.Sprintf("m%d", i),
			ClientURL: fmt.Sprintf("%s://127.0.0.1:%d", scheme, ports[2*i]),
			PeerURL:   fmt.Sprintf("http://127.0.0.1:%d", ports[2*i+1]),
			DataDir:   filepath.Join(dir, fmt.Sprintf("m%d.etcd", i)),
			LogFile:   filepath.Join(dir, fmt.Sprintf("m%d.log", i)),
		}
		c.Members = append(c.Members, m)
		initial = append(initial, m.Name+"="+m.PeerURL)
	}
	c.initial = strings.Join(initial, ",")
	for i := range c.Members {
		if err := c.start(i, "new"); err != nil {
			c.Stop()
			return nil, err
		}
	}
	if err := c.WaitHealthy(time.Minute); err != nil {
		err = fmt.Errorf("%w\n%s", err, c.Logs())
		c.Stop()
		return nil, err
	}
	return c, nil
}

func (c *Cluster) start(i int, state string) error {
	m := c.Members[i]
	log, err := os.OpenFile(m.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer log.Close()
	cmd := exec.Command(Program,
		"--name", m.Name,
		"--data-dir", m.DataDir,
		"--listen-client-urls", m.ClientURL,
		"--advertise-client-urls", m.ClientURL,
		"--listen-peer-urls", m.PeerURL,
		"--initial-advertise-peer-urls", m.PeerURL,
		"--initial-cluster", c.initial,
		"--initial-cluster-state", state,
		"--initial-cluster-token", "metalboot-test",
		"--heartbeat-interval", "100",
		"--election-timeout", "1000",
		"--logger", "zap",
		"--log-outputs", "stderr",
	)
	if c.certs != nil {
		cmd.Args = append(cmd.Args, "--cert-file", c.certs.ServerCert, "--key-file", c.certs.ServerKey,
			"--trusted-ca-file", c.certs.CA, "--client-cert-auth")
	}
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = procAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", m.Name, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	m.mu.Lock()
	m.cmd, m.done = cmd, done
	m.mu.Unlock()
	return nil
}

// Endpoints returns the client URLs of all members.
func (c *Cluster) Endpoints() []string {
	var eps []string
	for _, m := range c.Members {
		eps = append(eps, m.ClientURL)
	}
	return eps
}

// Client returns a client connected to every member, closed when the test
// ends.
func (c *Cluster) Client(t testing.TB) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   c.Endpoints(),
		DialTimeout: 5 * time.Second,
		TLS:         c.clientTLS,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		t.Fatalf("etcdtest: client: %v", err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// PID returns the process ID of member i (0 when it is not running).
func (c *Cluster) PID(i int) int {
	m := c.Members[i]
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd == nil || m.cmd.Process == nil {
		return 0
	}
	return m.cmd.Process.Pid
}

// Kill sends SIGKILL to member i (kill -9) and waits until it has exited.
func (c *Cluster) Kill(i int) {
	m := c.Members[i]
	m.mu.Lock()
	cmd, done := m.cmd, m.done
	m.cmd = nil
	m.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-done
}

// Restart starts member i again (after Kill) with its data directory and
// ports, and waits until the cluster answers again (a failure fails the
// test that started the cluster).
func (c *Cluster) Restart(i int) {
	var err error
	if err = c.start(i, "existing"); err == nil {
		err = c.WaitHealthy(time.Minute)
	}
	if err != nil && c.t != nil {
		c.t.Helper()
		c.t.Fatalf("etcdtest: %v\n%s", err, c.Logs())
	}
}

// WaitHealthy waits until every running member answers a status request
// and the cluster has a leader, or d has passed.
func (c *Cluster) WaitHealthy(d time.Duration) error {
	deadline := time.Now().Add(d)
	var last error
	for time.Now().Before(deadline) {
		if last = c.healthy(); last == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("cluster not healthy after %v: %w", d, last)
}

func (c *Cluster) healthy() error {
	for i, m := range c.Members {
		if c.PID(i) == 0 {
			continue
		}
		if err := func() error {
			cli, err := clientv3.New(clientv3.Config{Endpoints: []string{m.ClientURL}, DialTimeout: time.Second, TLS: c.clientTLS, Logger: zap.NewNop()})
			if err != nil {
				return err
			}
			defer cli.Close()
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			st, err := cli.Status(ctx, m.ClientURL)
			if err != nil {
				return fmt.Errorf("%s: %w", m.Name, err)
			}
			if st.Leader == 0 {
				return fmt.Errorf("%s: no leader", m.Name)
			}
			// A linearizable read needs a quorum behind this member.
			if _, err := cli.Get(ctx, "etcdtest-health"); err != nil {
				return fmt.Errorf("%s: get: %w", m.Name, err)
			}
			return nil
		}(); err != nil {
			return err
		}
	}
	return nil
}

// Logs returns the last lines of every member's log, for failure messages.
func (c *Cluster) Logs() string {
	var b bytes.Buffer
	for _, m := range c.Members {
		data, _ := os.ReadFile(m.LogFile)
		lines := strings.Split(strings.TrimSpace(string(data)), "\n")
		if len(lines) > 15 {
			lines = lines[len(lines)-15:]
		}
		fmt.Fprintf(&b, "--- %s (%s)\n%s\n", m.Name, m.LogFile, strings.Join(lines, "\n"))
	}
	return b.String()
}

// Stop kills every member (by PID) and waits for them to exit.
func (c *Cluster) Stop() {
	for i := range c.Members {
		c.Kill(i)
	}
	if c.t != nil && c.t.Failed() {
		c.t.Logf("etcdtest logs:\n%s", c.Logs())
	}
}

// Main is a TestMain body for packages whose tests and Examples share one
// cluster: it starts an n-member cluster into *c, runs m, stops the
// cluster and returns m's exit code. Without etcd *c stays nil (tests
// then skip through their own check) and the Examples, which cannot
// skip, are left out with -test.skip.
func Main(m *testing.M, n int, c **Cluster) int {
	flag.Parse()
	if f := flag.Lookup("test.run"); f != nil && f.Value.String() == "^$" {
		// Nothing will run (a build check, a fuzz run): start nothing.
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "etcdtest")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	*c, err = StartDir(dir, n)
	if err != nil {
		fmt.Fprintf(os.Stderr, "etcdtest: no etcd cluster (%v); tests that need one and the Examples skip\n", err)
		skip := "^Example"
		if f := flag.Lookup("test.skip"); f != nil && f.Value.String() != "" {
			skip = f.Value.String() + "|" + skip
		}
		_ = flag.Set("test.skip", skip)
	} else {
		defer (*c).Stop()
	}
	return m.Run()
}

// Shared returns c, the cluster Main started for a package's tests, or
// skips the test with the reason when there is none.
func Shared(t testing.TB, c *Cluster) *Cluster {
	t.Helper()
	if c == nil {
		Need(t)
		t.Skip("etcdtest: the shared etcd cluster did not start")
	}
	return c
}

// Eventually polls cond every 10 ms and fails the test when it has not
// held within 30 s ("not seen: what").
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not seen: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
