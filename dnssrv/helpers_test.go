package dnssrv

import (
	"context"
	"net"
	"net/netip"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// fakeClock is a settable clock for Table expiry.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// demoLab returns the demo lab's records: deploy.lab, mp.lab, smpc.lab.
func demoLab() *Table {
	t := new(Table)
	t.Set("deploy.lab", netip.MustParseAddr("172.22.10.2"))
	t.Set("mp.lab", netip.MustParseAddr("172.22.10.50"))
	t.Set("smpc.lab", netip.MustParseAddr("172.22.10.54"))
	t.Set("ns.lab", netip.MustParseAddr("172.22.10.2"))
	return t
}

func demoServer(records RecordSource) *Server {
	return &Server{
		Zones:      []string{"lab."},
		ReverseFor: []netip.Prefix{netip.MustParsePrefix("172.22.10.0/24")},
		Records:    records,
	}
}

// start serves s on 127.0.0.1 (UDP and TCP, one ephemeral port) until the
// test ends, and returns the address.
func start(t *testing.T, s *Server) netip.AddrPort {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pc, l, err := ListenUDPTCP(ctx, "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { pc.Close(); l.Close() }) // after Serve returned: Serve leaves them open
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, pc, l) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return after cancel")
		}
	})
	return pc.LocalAddr().(*net.UDPAddr).AddrPort()
}

func needDig(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("dig")
	if err != nil {
		t.Skip("dig not installed (Debian package dnsutils / bind9-dnsutils): skipping real-client test")
	}
	return p
}

// digResult is what a dig run printed.
type digResult struct {
	out        string
	status     string
	flags      []string
	answer     []string // answer section lines, whitespace collapsed
	authority  []string
	additional []string
	edns       string // the EDNS pseudo-section line, "" when absent
	tcp        bool   // the answer came over TCP
}

func (r digResult) hasFlag(f string) bool {
	for _, x := range r.flags {
		if x == f {
			return true
		}
	}
	return false
}

var (
	reStatus = regexp.MustCompile(`status: ([A-Z]+)`)
	reFlags  = regexp.MustCompile(`;; flags: ([a-z ]*);`)
	reEDNS   = regexp.MustCompile(`; EDNS: .*`)
)

// dig runs the real dig against addr with args and parses its output.
func dig(t *testing.T, addr netip.AddrPort, args ...string) digResult {
	t.Helper()
	bin := needDig(t)
	argv := append([]string{"@" + addr.Addr().String(), "-p", strconv.Itoa(int(addr.Port())),
		"+time=2", "+tries=1"}, args...)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, argv...).CombinedOutput()
	res := digResult{out: string(out)}
	if err != nil {
		t.Logf("dig %s: %v\n%s", strings.Join(argv, " "), err, out)
		return res
	}
	if m := reStatus.FindStringSubmatch(res.out); m != nil {
		res.status = m[1]
	}
	if m := reFlags.FindStringSubmatch(res.out); m != nil {
		res.flags = strings.Fields(m[1])
	}
	res.edns = reEDNS.FindString(res.out)
	res.tcp = strings.Contains(res.out, "(TCP)")
	var sec *[]string
	for _, line := range strings.Split(res.out, "\n") {
		switch {
		case strings.HasPrefix(line, ";; ANSWER SECTION:"):
			sec = &res.answer
		case strings.HasPrefix(line, ";; AUTHORITY SECTION:"):
			sec = &res.authority
		case strings.HasPrefix(line, ";; ADDITIONAL SECTION:"):
			sec = &res.additional
		case strings.TrimSpace(line) == "" || strings.HasPrefix(line, ";"):
			sec = nil
		case sec != nil:
			*sec = append(*sec, strings.Join(strings.Fields(line), " "))
		}
	}
	return res
}
