package dnssrv

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// upstream is a second, independent DNS server on 127.0.0.1 built with
// miekg/dns's own server, counting what it is asked.
type upstream struct {
	addr  string
	mu    sync.Mutex
	seen  map[string]int // "name/proto" → count
	fail  bool           // answer SERVFAIL to everything
	txtRR int            // TXT records for big.example.test.
}

func (u *upstream) count(name, proto string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.seen[name+"/"+proto]
}

func (u *upstream) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	_, isUDP := w.LocalAddr().(*net.UDPAddr)
	proto := "tcp"
	if isUDP {
		proto = "udp"
	}
	q := req.Question[0]
	u.mu.Lock()
	u.seen[strings.ToLower(q.Name)+"/"+proto]++
	u.mu.Unlock()
	m := new(dns.Msg)
	m.SetReply(req)
	m.RecursionAvailable = true
	if u.fail {
		m.Rcode = dns.RcodeServerFailure
		w.WriteMsg(m)
		return
	}
	soa := &dns.SOA{Hdr: dns.RR_Header{Name: "example.test.", Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: 30},
		Ns: "ns.example.test.", Mbox: "h.example.test.", Serial: 1, Minttl: 30}
	switch strings.ToLower(q.Name) {
	case "example.test.":
		if q.Qtype == dns.TypeA {
			m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300}, A: net.IPv4(192, 0, 2, 10)})
		} else {
			m.Ns = append(m.Ns, soa)
		}
	case "big.example.test.":
		for i := range u.txtRR {
			m.Answer = append(m.Answer, &dns.TXT{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 300},
				Txt: []string{fmt.Sprintf("record %02d %s", i, strings.Repeat("x", 90))}})
		}
	case "wrong.example.test.": // an answer to another question: must not be used
		m.Question[0].Name = "evil.example.test."
		m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: "evil.example.test.", Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300}, A: net.IPv4(192, 0, 2, 66)})
	default:
		m.Rcode = dns.RcodeNameError
		m.Ns = append(m.Ns, soa)
	}
	if opt := req.IsEdns0(); opt != nil {
		m.SetEdns0(opt.UDPSize(), false)
	}
	if isUDP {
		size := dns.MinMsgSize
		if opt := req.IsEdns0(); opt != nil {
			size = int(opt.UDPSize())
		}
		m.Truncate(size)
	}
	w.WriteMsg(m)
}

func startUpstream(t *testing.T, u *upstream) *upstream {
	t.Helper()
	u.seen = map[string]int{}
	pc, l, err := ListenUDPTCP(context.Background(), "127.0.0.1:0")
	require.NoError(t, err)
	u.addr = pc.LocalAddr().String()
	udp := &dns.Server{PacketConn: pc, Handler: u}
	tcp := &dns.Server{Listener: l, Handler: u}
	go udp.ActivateAndServe()
	go tcp.ActivateAndServe()
	t.Cleanup(func() { udp.Shutdown(); tcp.Shutdown() })
	return u
}

func TestDigForwarding(t *testing.T) {
	needDig(t)
	up := startUpstream(t, &upstream{txtRR: 40})
	broken := startUpstream(t, &upstream{fail: true})
	s := demoServer(demoLab())
	s.Upstreams = []string{broken.addr, up.addr}
	addr := start(t, s)

	t.Run("answer via upstream, then from cache", func(t *testing.T) {
		r := dig(t, addr, "example.test", "A")
		require.Equal(t, "NOERROR", r.status, r.out)
		require.Len(t, r.answer, 1, r.out)
		assert.True(t, strings.HasPrefix(r.answer[0], "example.test. "), r.out)
		assert.True(t, strings.HasSuffix(r.answer[0], " IN A 192.0.2.10"), r.out)
		assert.True(t, r.hasFlag("ra"), r.out)
		assert.False(t, r.hasFlag("aa"), r.out)
		assert.Equal(t, 1, broken.count("example.test.", "udp"), "the first upstream is asked first")
		assert.Equal(t, 1, up.count("example.test.", "udp"), "SERVFAIL moves on to the next upstream")

		r = dig(t, addr, "EXAMPLE.test", "A")
		require.Equal(t, "NOERROR", r.status, r.out)
		assert.True(t, strings.HasSuffix(r.answer[0], " IN A 192.0.2.10"), r.out)
		assert.Contains(t, r.out, ";EXAMPLE.test.\t", "question case kept: %s", r.out)
		assert.Equal(t, 1, up.count("example.test.", "udp"), "second answer came from the cache")
		assert.EqualValues(t, 1, s.Stats().CacheHits)
	})
	t.Run("NXDOMAIN forwarded and cached negatively", func(t *testing.T) {
		r := dig(t, addr, "nope.example.test")
		require.Equal(t, "NXDOMAIN", r.status, r.out)
		require.Len(t, r.authority, 1, r.out)
		assert.Contains(t, r.authority[0], "IN SOA ns.example.test.", r.out)
		dig(t, addr, "nope.example.test")
		assert.Equal(t, 1, up.count("nope.example.test.", "udp"))
	})
	t.Run("TCP fallback on truncation", func(t *testing.T) {
		r := dig(t, addr, "+tcp", "big.example.test", "TXT")
		require.Equal(t, "NOERROR", r.status, r.out)
		assert.Len(t, r.answer, 40, r.out)
		assert.Equal(t, 1, up.count("big.example.test.", "udp"), "asked over UDP first")
		assert.Equal(t, 1, up.count("big.example.test.", "tcp"), "then over TCP after TC")
		// Over UDP the 4 KB answer is truncated to the client's size; dig retries over TCP.
		r = dig(t, addr, "+ignore", "big.example.test", "TXT")
		assert.True(t, r.hasFlag("tc"), r.out)
		assert.Less(t, len(r.answer), 40, r.out)
	})
	t.Run("answer to another question is rejected", func(t *testing.T) {
		r := dig(t, addr, "wrong.example.test")
		assert.Equal(t, "SERVFAIL", r.status, r.out)
		assert.NotContains(t, r.out, "192.0.2.66")
		assert.Equal(t, 1, up.count("wrong.example.test.", "udp"))
	})
	t.Run("lab names are never forwarded", func(t *testing.T) {
		r := dig(t, addr, "nosuch.lab")
		assert.Equal(t, "NXDOMAIN", r.status, r.out)
		assert.Zero(t, up.count("nosuch.lab.", "udp"))
		r = dig(t, addr, "-x", "172.22.10.77")
		assert.Equal(t, "NXDOMAIN", r.status, r.out)
		assert.Zero(t, up.count("77.10.22.172.in-addr.arpa.", "udp"))
	})
	t.Run("reverse outside the lab goes upstream", func(t *testing.T) {
		r := dig(t, addr, "-x", "192.0.2.1")
		assert.Equal(t, "NXDOMAIN", r.status, r.out)
		assert.Equal(t, 1, up.count("1.2.0.192.in-addr.arpa.", "udp"))
	})
	st := s.Stats()
	assert.Positive(t, st.Forwarded)
	assert.EqualValues(t, 1, st.Failed, "only wrong.example.test failed")
}

func TestDigUpstreamDown(t *testing.T) {
	needDig(t)
	// A UDP socket that never answers, and a closed TCP port.
	dead, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { dead.Close() })
	s := demoServer(demoLab())
	s.Upstreams = []string{dead.LocalAddr().String()}
	s.UpstreamTimeout = 300 * time.Millisecond
	addr := start(t, s)
	r := dig(t, addr, "example.test")
	assert.Equal(t, "SERVFAIL", r.status, r.out)
	assert.EqualValues(t, 1, s.Stats().Failed)
	r = dig(t, addr, "mp.lab") // the lab still answers
	assert.Equal(t, []string{"mp.lab. 60 IN A 172.22.10.50"}, r.answer, r.out)
}

// TestDigForwardToDnsmasq forwards to a real dnsmasq on 127.0.0.1.
func TestDigForwardToDnsmasq(t *testing.T) {
	needDig(t)
	bin, err := exec.LookPath("dnsmasq")
	if err != nil {
		t.Skip("dnsmasq not installed (Debian package dnsmasq-base): skipping")
	}
	dir := t.TempDir()
	hosts := filepath.Join(dir, "hosts")
	require.NoError(t, os.WriteFile(hosts, []byte("198.51.100.7 peer.dnsmasq.test\n"), 0o644))
	// Find a free port for dnsmasq (UDP and TCP).
	pc, l, err := ListenUDPTCP(context.Background(), "127.0.0.1:0")
	require.NoError(t, err)
	port := pc.LocalAddr().(*net.UDPAddr).Port
	pc.Close()
	l.Close()
	cmd := exec.Command(bin, "--keep-in-foreground", "--port="+strconv.Itoa(port),
		"--listen-address=127.0.0.1", "--bind-interfaces", "--no-resolv", "--no-hosts",
		"--addn-hosts="+hosts, "--pid-file=", "--user="+currentUser(), "--log-facility=-")
	cmd.Stderr = os.Stderr
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })

	s := demoServer(demoLab())
	s.Upstreams = []string{"127.0.0.1:" + strconv.Itoa(port)}
	addr := start(t, s)
	var r digResult
	for range 50 { // dnsmasq needs a moment to bind
		r = dig(t, addr, "peer.dnsmasq.test")
		if r.status == "NOERROR" {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	require.Equal(t, "NOERROR", r.status, r.out)
	require.Len(t, r.answer, 1, r.out)
	assert.True(t, strings.HasSuffix(r.answer[0], "IN A 198.51.100.7"), r.out)
}

func currentUser() string {
	if os.Geteuid() == 0 {
		return "root"
	}
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	return strconv.Itoa(os.Geteuid())
}
