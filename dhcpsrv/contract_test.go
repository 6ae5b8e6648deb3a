package dhcpsrv_test

// The server contract (package metalboot's documentation): Validate
// reports every mistake, Serve never closes what it did not open, seams
// take the packet's context and their errors drop the packet.

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/metalboot/metalboot/dhcpsrv"
	"github.com/metalboot/metalboot/dhcpsrv/hwaddr"
)

func TestValidateReportsEveryMistake(t *testing.T) {
	s := &dhcpsrv.Server{
		ServerIP:   netip.MustParseAddr("2001:db8::1"),
		NextServer: netip.MustParseAddr("::1"),
		Subnets: []dhcpsrv.Subnet{{
			Prefix: netip.MustParsePrefix("10.99.0.0/24"),
			Ranges: []dhcpsrv.Range{
				{From: netip.MustParseAddr("10.99.0.200"), To: netip.MustParseAddr("10.99.0.100")}, // reversed
				{From: netip.MustParseAddr("10.99.1.1"), To: netip.MustParseAddr("10.99.1.9")},     // outside
				{From: netip.MustParseAddr("10.99.0.10"), To: netip.MustParseAddr("10.99.0.20")},
				{From: netip.MustParseAddr("10.99.0.15"), To: netip.MustParseAddr("10.99.0.30")}, // overlaps
			},
			Router:    netip.MustParseAddr("fe80::1"),
			DNS:       []netip.Addr{netip.MustParseAddr("10.99.0.1"), netip.MustParseAddr("::1")},
			Domain:    "bad domain",
			LeaseTime: -time.Minute,
		}, {
			Prefix: netip.MustParsePrefix("10.99.0.128/25"), // overlaps Subnets[0]
		}, {
			Prefix: netip.MustParsePrefix("2001:db8::/64"),
		}},
		Reservations: dhcpsrv.StaticReservations{
			hwaddr.MustParse("52:54:00:00:00:01"): {IP: netip.MustParseAddr("192.0.2.1")},
			hwaddr.MustParse("52:54:00:00:00:02"): {IP: netip.MustParseAddr("10.99.0.5"), Hostname: "a b"},
		},
		Boot: dhcpsrv.BootPolicy{HTTPBase: "ftp://x"},
	}
	err := s.Validate()
	require.Error(t, err)
	assert.ErrorIs(t, err, dhcpsrv.ErrConfig)
	for _, field := range []string{
		"ServerIP", "NextServer",
		"Subnets[0].Ranges[0]", "Subnets[0].Ranges[1]", "Subnets[0].Ranges[3]", "overlaps Ranges[2]",
		"Subnets[0].Router", "Subnets[0].DNS[1]", "Subnets[0].Domain", "Subnets[0].LeaseTime",
		"Subnets[1].Prefix", "overlaps Subnets[0]", "Subnets[2].Prefix",
		"Reservations[52:54:00:00:00:01].IP",
		"Boot.HTTPBase",
	} {
		assert.Contains(t, err.Error(), field)
	}
	assert.NotContains(t, err.Error(), "Subnets[0].Ranges[2]", "a good range is not reported")
	assert.NotContains(t, err.Error(), "Subnets[0].DNS[0]")
	assert.NotContains(t, err.Error(), "Hostname", "a bad reservation host name is left out when used, not fatal")
	// Each mistake is one joined error that wraps ErrConfig.
	parts := err.(interface{ Unwrap() []error }).Unwrap()
	assert.Len(t, parts, 13)
	for _, p := range parts {
		assert.ErrorIs(t, p, dhcpsrv.ErrConfig)
	}

	zero := (&dhcpsrv.Server{}).Validate()
	assert.ErrorIs(t, zero, dhcpsrv.ErrNoSubnet)
	assert.Contains(t, zero.Error(), "ServerIP")
	assert.NoError(t, (&dhcpsrv.Server{ProxyDHCP: true, ServerIP: serverIP}).Validate())
	good, _ := newServer(t, nil)
	assert.NoError(t, good.Validate())
}

// A bad range used to be dropped with a log line while the server ran on;
// now nothing serves it.
func TestBadRangeStopsTheServer(t *testing.T) {
	s, _ := newServer(t, func(s *dhcpsrv.Server) {
		s.Subnets[0].Ranges[0].To = netip.MustParseAddr("10.99.0.1") // before From
	})
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	require.NoError(t, err)
	defer conn.Close()
	err = s.Serve(ctx, conn)
	assert.ErrorIs(t, err, dhcpsrv.ErrConfig)
	assert.ErrorContains(t, err, "Subnets[0].Ranges[0]")
	_, err = s.Listen(ctx)
	assert.ErrorIs(t, err, dhcpsrv.ErrConfig)
	assert.ErrorIs(t, s.ListenAndServe(ctx), dhcpsrv.ErrConfig)
	assert.Nil(t, s.Reply(ctx, discover(t, mac(1))))
	assert.ErrorIs(t, (&dhcpsrv.Server{ServerIP: serverIP, ProxyDHCP: true}).Serve(ctx), dhcpsrv.ErrNoListener)
}

// Serve returns nil when its context ends and leaves the socket open and
// without a deadline: the caller opened it, the caller closes it.
func TestServeLeavesConnOpen(t *testing.T) {
	s, _ := newServer(t, nil)
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	require.NoError(t, err)
	defer conn.Close()
	peer, err := net.ListenPacket("udp4", "127.0.0.1:0")
	require.NoError(t, err)
	defer peer.Close()

	for round := range 2 { // a second Serve on the same socket works too
		c, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- s.Serve(c, conn) }()
		// Not a BOOTREQUEST: counted, never answered.
		_, err = peer.WriteTo([]byte("not dhcp"), conn.LocalAddr())
		require.NoError(t, err)
		require.Eventually(t, func() bool { return s.Stats().Malformed == uint64(round+1) }, 10*time.Second, 5*time.Millisecond)
		cancel()
		require.NoError(t, <-done)
	}

	_, err = peer.WriteTo([]byte("still open"), conn.LocalAddr())
	require.NoError(t, err)
	buf := make([]byte, 64)
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(10*time.Second)))
	n, _, err := conn.ReadFrom(buf)
	require.NoError(t, err, "the socket must stay open and readable")
	assert.Equal(t, "still open", string(buf[:n]))
}

type ctxKey struct{}

// The reservation source and the lease store get the packet's context.
func TestSeamsGetThePacketContext(t *testing.T) {
	var seen []any
	store := &recordingStore{Journal: dhcpsrv.NewMemoryStore()}
	s, _ := newServer(t, func(s *dhcpsrv.Server) {
		s.Leases = store
		s.Reservations = dhcpsrv.ReservationFunc(func(ctx context.Context, m hwaddr.MAC) (dhcpsrv.Reservation, bool, error) {
			seen = append(seen, ctx.Value(ctxKey{}))
			return dhcpsrv.Reservation{}, false, nil
		})
	})
	c := context.WithValue(ctx, ctxKey{}, "packet")
	offer := s.Reply(c, discover(t, mac(1)))
	require.NotNil(t, offer)
	ack := s.Reply(c, requestFor(t, offer))
	require.NotNil(t, ack)
	assert.Equal(t, []any{"packet", "packet"}, seen)
	assert.NotEmpty(t, store.ctxValues)
	for _, v := range store.ctxValues {
		assert.Equal(t, "packet", v)
	}
}

// recordingStore notes the context value of every call and can fail.
type recordingStore struct {
	*dhcpsrv.Journal
	ctxValues []any
	fail      error
}

func (r *recordingStore) note(ctx context.Context) error {
	r.ctxValues = append(r.ctxValues, ctx.Value(ctxKey{}))
	return r.fail
}

func (r *recordingStore) Get(ctx context.Context, ip netip.Addr) (dhcpsrv.Lease, error) {
	if err := r.note(ctx); err != nil {
		return dhcpsrv.Lease{}, err
	}
	return r.Journal.Get(ctx, ip)
}

func (r *recordingStore) ByMAC(ctx context.Context, m hwaddr.MAC) (dhcpsrv.Lease, error) {
	if err := r.note(ctx); err != nil {
		return dhcpsrv.Lease{}, err
	}
	return r.Journal.ByMAC(ctx, m)
}

func (r *recordingStore) CompareAndSwap(ctx context.Context, prev uint64, l dhcpsrv.Lease) (dhcpsrv.Lease, error) {
	if err := r.note(ctx); err != nil {
		return dhcpsrv.Lease{}, err
	}
	return r.Journal.CompareAndSwap(ctx, prev, l)
}

func (r *recordingStore) CompareAndDelete(ctx context.Context, ip netip.Addr, rev uint64) error {
	if err := r.note(ctx); err != nil {
		return err
	}
	return r.Journal.CompareAndDelete(ctx, ip, rev)
}

var errBackend = errors.New("backend unreachable")

// A reservation source that cannot answer makes the server drop the
// packet: a machine that may have a reservation never gets a dynamic
// address, and a REQUEST gets no NAK either (the client just retries).
func TestReservationErrorDropsPacket(t *testing.T) {
	reserved := netip.MustParseAddr("10.99.0.20")
	var down bool
	s, _ := newServer(t, func(s *dhcpsrv.Server) {
		s.Reservations = dhcpsrv.ReservationFunc(func(_ context.Context, m hwaddr.MAC) (dhcpsrv.Reservation, bool, error) {
			if down {
				return dhcpsrv.Reservation{}, false, errBackend
			}
			return dhcpsrv.Reservation{IP: reserved, Hostname: "node7"}, m == hwaddr.MAC(mac(1)), nil
		})
	})
	offer := s.Reply(ctx, discover(t, mac(1)))
	require.NotNil(t, offer)
	assert.Equal(t, reserved.String(), offer.YourIPAddr.String())

	down = true
	assert.Nil(t, s.Reply(ctx, discover(t, mac(1))), "no dynamic address while the source is down")
	assert.Nil(t, s.Reply(ctx, requestFor(t, offer)), "no ACK and no NAK while the source is down")
	st := s.Stats()
	assert.EqualValues(t, 2, st.ReservationErrors)
	assert.Zero(t, st.Naks)
	assert.Zero(t, st.PoolExhausted)
	_, ok, err := s.Lease(ctx, hwaddr.MAC(mac(1)))
	require.NoError(t, err)
	assert.False(t, ok)

	down = false
	ack := s.Reply(ctx, requestFor(t, offer))
	require.NotNil(t, ack)
	assert.Equal(t, dhcpv4.MessageTypeAck, ack.MessageType())
	assert.Equal(t, reserved.String(), ack.YourIPAddr.String())
}

// reservedFor is a source whose ReservedFor can fail.
type reservedFor struct{ err error }

func (reservedFor) Reservation(context.Context, hwaddr.MAC) (dhcpsrv.Reservation, bool, error) {
	return dhcpsrv.Reservation{}, false, nil
}

func (r reservedFor) ReservedFor(context.Context, netip.Addr) (hwaddr.MAC, bool, error) {
	return hwaddr.MAC{}, false, r.err
}

func TestReservedForErrorDropsPacket(t *testing.T) {
	s, _ := newServer(t, func(s *dhcpsrv.Server) { s.Reservations = reservedFor{err: errBackend} })
	assert.Nil(t, s.Reply(ctx, discover(t, mac(1))))
	assert.EqualValues(t, 1, s.Stats().ReservationErrors)
	assert.Zero(t, s.Stats().PoolExhausted, "an unreadable source is no exhausted pool")
}

// A lease store that fails makes the server drop the packet and say so;
// Server.Lease returns the error instead of "no lease".
func TestStoreErrorDropsPacket(t *testing.T) {
	store := &recordingStore{Journal: dhcpsrv.NewMemoryStore()}
	s, _ := newServer(t, func(s *dhcpsrv.Server) { s.Leases = store })
	ack := dora(t, s, mac(1))

	store.fail = errBackend
	assert.Nil(t, s.Reply(ctx, discover(t, mac(2))))
	assert.Nil(t, s.Reply(ctx, requestFor(t, ack)))
	st := s.Stats()
	assert.EqualValues(t, 2, st.StoreErrors)
	assert.Zero(t, st.PoolExhausted)
	assert.Zero(t, st.Naks)
	_, ok, err := s.Lease(ctx, hwaddr.MAC(mac(1)))
	assert.ErrorIs(t, err, errBackend)
	assert.False(t, ok)

	store.fail = nil
	l, ok, err := s.Lease(ctx, hwaddr.MAC(mac(1)))
	require.NoError(t, err)
	require.True(t, ok)
	assert.Equal(t, ack.YourIPAddr.String(), l.IP.String())
}

func TestParseArch(t *testing.T) {
	for name, want := range map[string][]dhcpsrv.Arch{
		"bios":       {dhcpsrv.ArchBIOS},
		"efi64":      {dhcpsrv.ArchEFIx64, dhcpsrv.ArchEFIBC},
		"arm64":      {dhcpsrv.ArchEFIARM64},
		"http":       {dhcpsrv.ArchEFIx64HTTP},
		"arm64-http": {dhcpsrv.ArchEFIARM64HTTP},
	} {
		got, err := dhcpsrv.ParseArch(name)
		require.NoError(t, err, name)
		assert.Equal(t, want, got, name)
	}
	for _, bad := range []string{"", "BIOS", "efi", " bios", "x86_64-efi"} {
		_, err := dhcpsrv.ParseArch(bad)
		assert.ErrorIs(t, err, dhcpsrv.ErrUnknownArch, bad)
		assert.ErrorContains(t, err, "valid names: bios, efi64, arm64, http, arm64-http", bad)
	}

	files, err := dhcpsrv.BootFilesByName(map[string]string{"efi64": "x64.efi", "http": "http://h/x.efi"})
	require.NoError(t, err)
	assert.Equal(t, "x64.efi", files[dhcpsrv.ArchEFIx64])
	assert.Equal(t, "x64.efi", files[dhcpsrv.ArchEFIBC])
	assert.Equal(t, "http://h/x.efi", files[dhcpsrv.ArchEFIx64HTTP])
	assert.Equal(t, dhcpsrv.DefaultBootFiles[dhcpsrv.ArchBIOS], files[dhcpsrv.ArchBIOS])
	assert.Equal(t, "grub/x86_64-efi/core.efi", dhcpsrv.DefaultBootFiles[dhcpsrv.ArchEFIx64], "defaults untouched")
	_, err = dhcpsrv.BootFilesByName(map[string]string{"zz": "a", "aa": "b", "bios": "c"})
	require.ErrorIs(t, err, dhcpsrv.ErrUnknownArch)
	assert.Equal(t, 2, strings.Count(err.Error(), "unknown architecture name"))
	assert.Less(t, strings.Index(err.Error(), `"aa"`), strings.Index(err.Error(), `"zz"`), "names in order")
}
