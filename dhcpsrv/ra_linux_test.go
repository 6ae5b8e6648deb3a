package dhcpsrv_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/metalboot/metalboot/dhcpsrv"
	"github.com/metalboot/metalboot/internal/e2e"
	"github.com/metalboot/metalboot/internal/netns"
)

// raLab is a server namespace with bridge br0 and a client namespace
// linked to it as eth0, with a RouterAdvertiser serving br0.
func raLab(t *testing.T) (srv, cli *netns.NS, ra *dhcpsrv.RouterAdvertiser) {
	t.Helper()
	netns.Need(t, "rdisc6")
	srv, cli = netns.New(t), netns.New(t)
	srv.Bridge("br0", "10.99.0.1/24")
	srv.Connect("br0", cli, "eth0", "10.99.0.2/24")
	waitLinkLocal(t, srv, "br0")
	waitLinkLocal(t, cli, "eth0")
	ra = &dhcpsrv.RouterAdvertiser{Interface: "br0"}
	var conn net.PacketConn
	require.NoError(t, srv.Do(func() error {
		var err error
		conn, err = ra.Listen(context.Background())
		return err
	}))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ra.Serve(ctx, conn) }()
	t.Cleanup(func() {
		cancel()
		assert.NoError(t, <-done)
		conn.Close()
	})
	return srv, cli, ra
}

// waitLinkLocal waits until dev has a link-local address that duplicate
// address detection has cleared (neighbour discovery is sent from it).
func waitLinkLocal(t *testing.T, ns *netns.NS, dev string) {
	t.Helper()
	for i := 0; ; i++ {
		out, _ := ns.Command(context.Background(), "ip", "-6", "addr", "show", "dev", dev, "scope", "link").CombinedOutput()
		if strings.Contains(string(out), "fe80::") && !strings.Contains(string(out), "tentative") {
			return
		}
		require.Less(t, i, 100, "no usable link-local address on %s: %s", dev, out)
		time.Sleep(100 * time.Millisecond)
	}
}

// rdisc6 asks for a router once (three solicitations, one second apart)
// with the real ndisc6 client and returns what it printed.
func rdisc6(t *testing.T, cli *netns.NS) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := cli.Command(ctx, "rdisc6", "-1", "-r", "3", "-w", "1000", "eth0").CombinedOutput()
	return string(out), err
}

// TestRouterAdvertiserAnswersRdisc6: the real ndisc6 client gets an
// advertisement that configures nothing: router lifetime 0, no M/O flags,
// no prefix.
func TestRouterAdvertiserAnswersRdisc6(t *testing.T) {
	_, cli, ra := raLab(t)
	out, err := rdisc6(t, cli)
	require.NoError(t, err, "%s\nstats %+v", out, ra.Stats())
	assert.Regexp(t, `Router lifetime\s*:\s*0 `, out)
	assert.Regexp(t, `Stateful address conf\.\s*:\s*No`, out)
	assert.Regexp(t, `Stateful other conf\.\s*:\s*No`, out)
	assert.NotContains(t, out, "Prefix")
	st := ra.Stats()
	assert.GreaterOrEqual(t, st.Solicitations, uint64(1))
	assert.GreaterOrEqual(t, st.Advertisements, uint64(1))
}

// TestRouterAdvertiserSilentBesideARouter: once another router advertises
// on the segment, solicitations go unanswered (by us).
func TestRouterAdvertiserSilentBesideARouter(t *testing.T) {
	_, cli, ra := raLab(t)
	// A "router" in the client namespace advertises once.
	var s e2e.RASocket
	require.NoError(t, cli.Do(func() error {
		var err error
		s, err = e2e.OpenRASocket("eth0")
		return err
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	// SendRouterAdvertisements closes its socket when it returns: a fresh
	// one for every try, until the advertiser has heard one.
	for ra.Stats().ForeignRouters == 0 && ctx.Err() == nil {
		sctx, scancel := context.WithTimeout(ctx, 600*time.Millisecond)
		e2e.SendRouterAdvertisements(sctx, s, 500*time.Millisecond)
		scancel()
		require.NoError(t, cli.Do(func() error { var err error; s, err = e2e.OpenRASocket("eth0"); return err }))
	}
	require.NotZero(t, ra.Stats().ForeignRouters, "the other router's advertisement was heard")
	before := ra.Stats().Advertisements
	out, err := rdisc6(t, cli)
	assert.Error(t, err, "no answer expected beside a router: %s", out)
	assert.Equal(t, before, ra.Stats().Advertisements)
	assert.NotZero(t, ra.Stats().Silenced)
	assert.True(t, strings.Contains(out, "No response") || out == "" || err != nil, out)
}
