package dhcpsrv_test

// Tests for issue #14: values from the network and from the lease journal
// are validated before they are stored or echoed; a damaged journal stops
// the start instead of being replaced; offers to clients that never REQUEST
// do not keep a small pool exhausted.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/metalboot/metalboot/dhcpsrv"
	"github.com/metalboot/metalboot/dhcpsrv/hwaddr"
)

// Host names a client may send in option 12 that must never be stored or
// echoed: they would reach Ignition YAML, the kernel command line, DNS.
var badHostnames = []string{
	"evil\nruncmd: [reboot]",
	"a b",
	"x;reboot",
	"$(id)",
	"`id`",
	"foo_bar",
	"-lead",
	"trail-",
	"mid.-dle",
	"a..b",
	".",
	".lead",
	"node7..",
	"ünicode",
	"tab\there",
	"nul\x00inside",
	"quote\"d",
	"back\\slash",
	"{{.MAC}}",
	"x=1 init=/bin/sh",
	strings.Repeat("a", 64), // label too long
	strings.Repeat("abcdefghi.", 25) + "abcd",               // 254 bytes
	strings.Repeat("a", 63) + "." + strings.Repeat("b", 64), // second label too long
	"%s%n",
}

// Host names that are fine, and what is stored for them.
var goodHostnames = map[string]string{
	"node7":                                  "node7",
	"Node-7":                                 "node-7",
	"NODE7.LAB.":                             "node7.lab",
	"7node":                                  "7node",
	"a":                                      "a",
	"a-b-c.d-e":                              "a-b-c.d-e",
	strings.Repeat("a", 63):                  strings.Repeat("a", 63),
	strings.Repeat("abcdefghi.", 25) + "abc": strings.Repeat("abcdefghi.", 25) + "abc", // 253 bytes
	strings.Repeat("abcdefghi.", 25) + "abc.": strings.Repeat("abcdefghi.", 25) + "abc",
}

func withHostname(h string) dhcpv4.Modifier {
	return dhcpv4.WithOption(dhcpv4.OptGeneric(dhcpv4.OptionHostName, []byte(h)))
}

// A client's option 12 that is not an RFC 1123 host name is neither stored
// in the lease nor echoed in the OFFER or ACK; the lease is still granted.
func TestBadHostnameFromWireIsDropped(t *testing.T) {
	for i, h := range badHostnames {
		t.Run(fmt.Sprintf("%q", h), func(t *testing.T) {
			var logs bytes.Buffer
			var hooked []dhcpsrv.Lease
			s, _ := newServer(t, func(s *dhcpsrv.Server) {
				s.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
				s.OnLease = func(l dhcpsrv.Lease) { hooked = append(hooked, l) }
			})
			m := net.HardwareAddr{0x52, 0x54, 0, 1, byte(i >> 8), byte(i)}
			offer := s.Reply(ctx, discover(t, m, withHostname(h)))
			require.NotNil(t, offer, "the lease is still offered")
			assert.False(t, offer.Options.Has(dhcpv4.OptionHostName), "OFFER echoes %q", offer.HostName())
			ack := s.Reply(ctx, requestFor(t, offer, withHostname(h)))
			require.NotNil(t, ack)
			require.Equal(t, dhcpv4.MessageTypeAck, ack.MessageType(), "the lease is still granted")
			assert.False(t, ack.Options.Has(dhcpv4.OptionHostName), "ACK echoes %q", ack.HostName())
			l, ok, _ := s.Lease(context.Background(), hwaddr.MAC(m))
			require.True(t, ok)
			assert.Empty(t, l.Hostname, "stored")
			require.Len(t, hooked, 1)
			assert.Empty(t, hooked[0].Hostname, "OnLease")
			assert.EqualValues(t, 2, s.Stats().BadHostname, "DISCOVER and REQUEST counted")
			assert.Contains(t, logs.String(), strings.Trim(fmt.Sprintf("%q", fmt.Sprintf("%q", h)), `"`), "log shows the value quoted")
		})
	}
}

func TestGoodHostnameFromWireIsNormalised(t *testing.T) {
	i := 0
	for h, want := range goodHostnames {
		i++
		t.Run(h, func(t *testing.T) {
			s, _ := newServer(t, nil)
			m := net.HardwareAddr{0x52, 0x54, 0, 2, 0, byte(i)}
			ack := dora(t, s, m, withHostname(h))
			assert.Equal(t, want, ack.HostName())
			l, ok, _ := s.Lease(context.Background(), hwaddr.MAC(m))
			require.True(t, ok)
			assert.Equal(t, want, l.Hostname)
			assert.Zero(t, s.Stats().BadHostname)
			got, ok := dhcpsrv.ValidHostname(h)
			assert.True(t, ok)
			assert.Equal(t, want, got)
		})
	}
	for _, h := range badHostnames {
		_, ok := dhcpsrv.ValidHostname(h)
		assert.False(t, ok, "%q", h)
	}
	// some clients NUL-terminate option 12
	s, _ := newServer(t, nil)
	assert.Equal(t, "node9", dora(t, s, mac(9), withHostname("node9\x00")).HostName())
	_, ok := dhcpsrv.ValidHostname("")
	assert.False(t, ok, "empty")
}

// Option 97 is stored as a UUID or as hex, never as the bytes sent.
func TestUUIDFromWireIsHexOnly(t *testing.T) {
	s, _ := newServer(t, nil)
	for i, raw := range [][]byte{
		[]byte("\x00evil\n$(id)\"x\\y"),     // 16 bytes, type 0, not 17 long
		[]byte("\x01" + "0123456789abcdef"), // wrong type
		append([]byte{0}, []byte("0123456789abcdef")...),
		bytes.Repeat([]byte{0xff, '\n'}, 127),
		[]byte("000000000000000000"),   // 18 bytes: 36 hex digits, as long as a UUID (found by FuzzParseClientInfo)
		bytes.Repeat([]byte{'A'}, 300), // longer than one option: split over several
	} {
		m := net.HardwareAddr{0x52, 0x54, 0, 3, 0, byte(i)}
		dora(t, s, m, dhcpv4.WithOption(dhcpv4.OptGeneric(dhcpv4.OptionClientMachineIdentifier, raw)))
		l, ok, _ := s.Lease(context.Background(), hwaddr.MAC(m))
		require.True(t, ok)
		if len(raw) > 255 {
			assert.Empty(t, l.UUID)
			continue
		}
		assert.True(t, dhcpsrv.ValidUUID(l.UUID), "%q", l.UUID)
		assert.Regexp(t, `^[0-9a-f-]+$`, l.UUID)
	}
}

// journalLine encodes one record the way the journal writes it.
func journalLine(t *testing.T, rec map[string]any) []byte {
	t.Helper()
	body, err := json.Marshal(rec)
	require.NoError(t, err)
	return fmt.Appendf(nil, "%08x %s\n", crc32.ChecksumIEEE(body), body)
}

// A journal written by an older version may hold a host name or UUID that
// the wire validation would refuse: the field is dropped on replay, the
// lease is kept.
func TestJournalReplayDropsBadHostnameKeepsLease(t *testing.T) {
	dir := t.TempDir()
	var data []byte
	data = append(data, journalLine(t, map[string]any{"op": "rev", "rev": 3})...)
	data = append(data, journalLine(t, map[string]any{"op": "put", "rev": 1, "ip": "10.99.0.100", "mac": "52:54:00:00:00:01",
		"host": "evil\nruncmd: [reboot]", "uuid": "x\" y", "exp": int64(2e18)})...)
	data = append(data, journalLine(t, map[string]any{"op": "put", "rev": 2, "ip": "10.99.0.101", "mac": "52:54:00:00:00:02",
		"host": "Good-Name", "uuid": "33323130-3534-3736-3839-616263646566", "exp": int64(2e18)})...)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "leases.journal"), data, 0o640))
	j, err := dhcpsrv.OpenJournal(dir)
	require.NoError(t, err)
	defer j.Close()
	all, err := j.Leases()
	require.NoError(t, err)
	require.Len(t, all, 2, "both leases kept")
	assert.Equal(t, "10.99.0.100", all[0].IP.String())
	assert.Equal(t, "52:54:00:00:00:01", all[0].MAC.String())
	assert.Empty(t, all[0].Hostname)
	assert.Empty(t, all[0].UUID)
	assert.Equal(t, "good-name", all[1].Hostname)
	assert.Equal(t, "33323130-3534-3736-3839-616263646566", all[1].UUID)
	rep := j.Recovery()
	assert.Equal(t, 1, rep.BadHostnames)
	assert.Equal(t, 1, rep.BadUUIDs)

	// a server on this journal logs and counts what was dropped
	var logs bytes.Buffer
	s, _ := newServer(t, func(s *dhcpsrv.Server) {
		s.Leases = j
		s.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	l, ok, _ := s.Lease(context.Background(), hwaddr.MustParse("52:54:00:00:00:01"))
	require.True(t, ok)
	assert.Empty(t, l.Hostname)
	assert.EqualValues(t, 1, s.Stats().BadHostname)
	assert.Contains(t, logs.String(), `evil\\nruncmd`)
}

// A lease store other than the journal (etcd, SQL …) may return anything:
// Server.Lease and the hooks never pass an invalid host name or UUID on.
func TestServerLeaseValidatesForeignStore(t *testing.T) {
	store := dhcpsrv.NewMemoryStore()
	_, err := store.CompareAndSwap(context.Background(), 0, dhcpsrv.Lease{IP: netip.MustParseAddr("10.99.0.100"), MAC: hwaddr.MAC(mac(1)),
		Hostname: "a b\nc", UUID: "not a uuid", Expires: farFuture})
	require.NoError(t, err)
	s, _ := newServer(t, func(s *dhcpsrv.Server) { s.Leases = store })
	l, ok, _ := s.Lease(context.Background(), hwaddr.MAC(mac(1)))
	require.True(t, ok)
	assert.Empty(t, l.Hostname)
	assert.Empty(t, l.UUID)
	assert.EqualValues(t, 1, s.Stats().BadHostname)
}

// journalWith3 writes a journal with three leases and returns its path and
// bytes.
func journalWith3(t *testing.T) (dir, path string, data []byte) {
	t.Helper()
	dir = t.TempDir()
	j, err := dhcpsrv.OpenJournal(dir)
	require.NoError(t, err)
	for i := 1; i <= 3; i++ {
		_, err := j.CompareAndSwap(context.Background(), 0, lease(i, farFuture))
		require.NoError(t, err)
	}
	require.NoError(t, j.Close())
	path = filepath.Join(dir, "leases.journal")
	data, err = os.ReadFile(path)
	require.NoError(t, err)
	return dir, path, data
}

func fileHash(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return sha256.Sum256(b)
}

// A damaged journal stops OpenJournal with the file, the offset and the
// record, and is left byte for byte as it was; it is never taken as empty.
func TestCorruptJournalStopsStart(t *testing.T) {
	_, _, good := journalWith3(t)
	lines := bytes.SplitAfter(good, []byte("\n"))
	require.Len(t, lines, 5, "rev record, three leases, empty tail")
	second := len(lines[0]) + len(lines[1]) // offset of the second lease record

	flipped := bytes.Clone(good)
	flipped[second+20] ^= 0x01
	cases := []struct {
		name   string
		data   []byte
		offset int64
	}{
		{"zeros", make([]byte, 4096), 0},
		{"zeros with newline", append(make([]byte, 100), '\n'), 0},
		{"garbage without newline", []byte("this is not a lease journal"), 0},
		{"garbage lines", []byte("garbage\nmore garbage\n"), 0},
		{"flipped byte in a middle record", flipped, int64(second)},
		{"record missing in the middle", append(bytes.Clone(lines[0]), append(lines[1][:30:30], lines[2]...)...), int64(len(lines[0]))},
		{"garbage line between records", append(append(bytes.Clone(lines[0]), "xx\n"...), lines[1]...), int64(len(lines[0]))},
		{"torn record followed by a good one", append(append(bytes.Clone(lines[0]), lines[1][:20]...), lines[2]...), int64(len(lines[0]))},
		{"zeros after the records", append(bytes.Clone(good), append(make([]byte, 64), '\n')...), int64(len(good))},
		{"record without IP", append(bytes.Clone(good), journalLine(t, map[string]any{"op": "put", "rev": 9})...), int64(len(good))},
		{"bound lease without MAC", append(bytes.Clone(good), journalLine(t, map[string]any{"op": "put", "rev": 9, "ip": "10.99.0.9", "exp": 1})...), int64(len(good))},
		{"unknown op", append(bytes.Clone(good), journalLine(t, map[string]any{"op": "drop", "rev": 9, "ip": "10.99.0.9"})...), int64(len(good))},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "leases.journal")
			require.NoError(t, os.WriteFile(path, c.data, 0o640))
			before := fileHash(t, path)
			j, err := dhcpsrv.OpenJournal(dir)
			if err == nil {
				n := j.Len()
				j.Close()
				t.Fatalf("opened a corrupt journal (%d leases)", n)
			}
			assert.ErrorIs(t, err, dhcpsrv.ErrCorrupt)
			assert.Contains(t, err.Error(), path)
			assert.Equal(t, before, fileHash(t, path), "journal changed")
			var je *dhcpsrv.JournalError
			require.ErrorAs(t, err, &je)
			assert.Equal(t, path, je.File)
			assert.Equal(t, c.offset, je.Offset)
			assert.Contains(t, err.Error(), fmt.Sprintf("offset %d", c.offset))
			assert.LessOrEqual(t, len(je.Record), 200, "record truncated")
			rest := c.data[je.Offset:]
			if i := bytes.IndexByte(rest, '\n'); i >= 0 {
				rest = rest[:i+1]
			}
			assert.True(t, bytes.HasPrefix(rest, []byte(strings.TrimSuffix(je.Record, "…"))), "record %q is not the one at the offset", je.Record)
			// a second attempt fails the same way: nothing was repaired
			_, err2 := dhcpsrv.OpenJournal(dir)
			assert.ErrorIs(t, err2, dhcpsrv.ErrCorrupt)
			assert.Equal(t, before, fileHash(t, path), "journal changed")
		})
	}
}

// Only a torn last record (a crash mid-append: no newline after it) is
// dropped, with a warning; every lease before it is kept.
func TestTornLastRecordIsDropped(t *testing.T) {
	_, _, good := journalWith3(t)
	lines := bytes.SplitAfter(good, []byte("\n"))
	for _, tail := range [][]byte{
		lines[3][:len(lines[3])-1], // all but the newline
		lines[3][:10],
		[]byte("1"),
		make([]byte, 512), // a zero-filled tail (un-synced append after power loss)
	} {
		dir := t.TempDir()
		path := filepath.Join(dir, "leases.journal")
		data := append(bytes.Join(lines[:3], nil), tail...)
		require.NoError(t, os.WriteFile(path, data, 0o640))
		j, err := dhcpsrv.OpenJournal(dir)
		require.NoError(t, err, "tail %q", tail)
		assert.Equal(t, 2, j.Len())
		rep := j.Recovery()
		assert.Equal(t, int64(len(data)-len(tail)), rep.TornOffset)
		assert.Equal(t, len(tail), rep.TornBytes)
		var logs bytes.Buffer
		s, _ := newServer(t, func(s *dhcpsrv.Server) {
			s.Leases = j
			s.Logger = slog.New(slog.NewTextHandler(&logs, nil))
		})
		s.Stats()
		_, _, _ = s.Lease(context.Background(), hwaddr.MAC{})
		assert.Contains(t, logs.String(), "level=WARN")
		assert.Contains(t, logs.String(), "torn")
		require.NoError(t, j.Close())
	}
}

// MoveAside is the operator's way out of a corrupt journal: the file is
// kept under a new name and the next OpenJournal starts empty.
func TestMoveAside(t *testing.T) {
	dir := t.TempDir()
	path := dhcpsrv.JournalPath(dir)
	require.NoError(t, os.WriteFile(path, []byte("garbage\n"), 0o640))
	_, err := dhcpsrv.OpenJournal(dir)
	var je *dhcpsrv.JournalError
	require.ErrorAs(t, err, &je)
	moved, err := dhcpsrv.MoveAside(je.File)
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(moved, path+".corrupt-"), moved)
	b, err := os.ReadFile(moved)
	require.NoError(t, err)
	assert.Equal(t, "garbage\n", string(b), "evidence kept")
	_, err = os.Stat(path)
	assert.ErrorIs(t, err, os.ErrNotExist)
	j, err := dhcpsrv.OpenJournal(dir)
	require.NoError(t, err)
	assert.Zero(t, j.Len())

	// never while the journal is open, never over an existing file
	_, err = dhcpsrv.MoveAside(path)
	assert.Error(t, err, "journal in use")
	require.NoError(t, j.Close())
	_, err = dhcpsrv.MoveAside(filepath.Join(dir, "missing"))
	assert.ErrorIs(t, err, os.ErrNotExist)
}

// Twenty fake MACs that DISCOVER and never REQUEST cannot keep a pool of
// ten addresses from a real client: the oldest address that is only offered
// is reclaimed.
func TestOfferFloodDoesNotStarvePool(t *testing.T) {
	s, clk := newServer(t, nil) // 10 addresses
	fake := func(i int) net.HardwareAddr { return net.HardwareAddr{0x02, 0xba, 0xd0, 0, 0, byte(i)} }
	offered := map[string]bool{}
	for round := range 3 {
		for i := range 20 {
			if o := s.Reply(ctx, discover(t, fake(i))); o != nil {
				offered[o.YourIPAddr.String()] = true
			}
		}
		if round < 2 {
			clk.Add(dhcpsrv.DefaultOfferTime / 2)
		}
	}
	assert.Len(t, offered, 10, "the flood holds the whole pool")
	// a real client arriving during the flood gets an address at once
	ack := dora(t, s, mac(1))
	assert.True(t, offered[ack.YourIPAddr.String()])
	assert.Positive(t, s.Stats().OffersReclaimed)
	// and keeps it against the flood: nobody else is offered it
	for i := range 20 {
		if o := s.Reply(ctx, discover(t, fake(i))); o != nil {
			assert.NotEqual(t, ack.YourIPAddr.String(), o.YourIPAddr.String())
		}
	}
	// a fake MAC whose offer was reclaimed cannot REQUEST the address now
	// leased to the real client
	r, err := dhcpv4.NewRequestFromOffer(ack)
	require.NoError(t, err)
	r.ClientHWAddr = fake(0)
	assert.Equal(t, dhcpv4.MessageTypeNak, s.Reply(ctx, r).MessageType())
}

// The offer hold is short: an address offered to a client that never asks
// for it is free for anyone once DefaultOfferTime has passed, without
// reclaiming.
func TestOfferHoldIsShort(t *testing.T) {
	s, clk := newServer(t, func(s *dhcpsrv.Server) {
		s.Subnets[0].Ranges = []dhcpsrv.Range{{From: netip.MustParseAddr("10.99.0.100"), To: netip.MustParseAddr("10.99.0.100")}}
	})
	// a few seconds, like ISC dhcpd and Kea (see DefaultOfferTime), not 30 s
	assert.LessOrEqual(t, dhcpsrv.DefaultOfferTime, 10*time.Second)
	o := s.Reply(ctx, discover(t, mac(1)))
	require.NotNil(t, o)
	clk.Add(dhcpsrv.DefaultOfferTime)
	ack := dora(t, s, mac(2))
	assert.Equal(t, o.YourIPAddr.String(), ack.YourIPAddr.String())
	assert.Zero(t, s.Stats().OffersReclaimed, "the offer had expired")
}

// Acknowledged leases are never reclaimed: with a pool full of ACKed
// leases a flood of DISCOVERs gets no offer, and no ACKed address is ever
// offered or ACKed to another MAC.
func TestAckedLeaseNeverReclaimed(t *testing.T) {
	s, clk := newServer(t, nil) // 10 addresses, 1 h leases
	owner := map[string]string{}
	for i := range 6 {
		ack := dora(t, s, mac(i))
		owner[ack.YourIPAddr.String()] = mac(i).String()
	}
	for round := range 5 {
		for i := range 30 {
			hw := net.HardwareAddr{0x02, 0xba, 0xd1, 0, byte(round), byte(i)}
			o := s.Reply(ctx, discover(t, hw))
			if o == nil {
				continue
			}
			ip := o.YourIPAddr.String()
			_, taken := owner[ip]
			assert.False(t, taken, "ACKed address %s offered to %s", ip, hw)
			if i%3 == 0 { // some of them do REQUEST
				if a := s.Reply(ctx, requestFor(t, o)); a != nil && a.MessageType() == dhcpv4.MessageTypeAck {
					owner[ip] = hw.String()
				}
			}
			// and asking directly for every leased address is refused
			for leased, m := range owner {
				if m == hw.String() {
					continue
				}
				r, err := dhcpv4.NewRequestFromOffer(o)
				require.NoError(t, err)
				r.UpdateOption(dhcpv4.OptRequestedIPAddress(net.ParseIP(leased)))
				a := s.Reply(ctx, r)
				require.NotNil(t, a)
				assert.Equal(t, dhcpv4.MessageTypeNak, a.MessageType(), "%s ACKed to %s, owned by %s", leased, hw, m)
			}
		}
		clk.Add(dhcpsrv.DefaultOfferTime / 3)
	}
	// every original lease is intact
	for i := range 6 {
		l, ok, _ := s.Lease(context.Background(), hwaddr.MAC(mac(i)))
		require.True(t, ok)
		assert.Equal(t, mac(i).String(), owner[l.IP.String()])
	}
	assert.Len(t, owner, 10, "the pool ends up fully leased, each address once")
	assert.Positive(t, s.Stats().PoolExhausted)
}

var farFuture = time.Unix(2000000000, 0)
