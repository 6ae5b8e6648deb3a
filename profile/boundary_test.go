package profile_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/metalboot/metalboot/dhcpsrv/hwaddr"
	"github.com/metalboot/metalboot/profile"
	"github.com/metalboot/metalboot/profile/demo"
)

// TestParseQueryCaseDuplicates: parameters that differ only in case name
// the same attribute; two of them are "given twice", every time, whatever
// the order url.ParseQuery's map yields them in (issue #14: mac and MAC
// resolved at random).
func TestParseQueryCaseDuplicates(t *testing.T) {
	for _, q := range []string{
		"mac=00:23:32:2f:40:3c&MAC=00:30:48:fb:e2:44",
		"MAC=00:30:48:fb:e2:44&mac=00:23:32:2f:40:3c",
		"mac=00:23:32:2f:40:3c&Mac=00:23:32:2f:40:3c",
		"uuid=&UUID=4c4c4544-0043-3010-8058-b4c04f4c4e32",
		"os=installed&OS=",
		"os=a&oS=b&Os=c",
		"mac=zz&MAC=00:23:32:2f:40:3c",
	} {
		var first string
		for i := 0; i < 50; i++ {
			_, err := profile.ParseQuery(q)
			require.Error(t, err, q)
			require.ErrorIs(t, err, profile.ErrBadRequest, q)
			require.Contains(t, err.Error(), "given twice", q)
			if i == 0 {
				first = err.Error()
			}
			require.Equal(t, first, err.Error(), "%s: the same answer every time", q)
		}
	}
	// Several problems: the answer is still deterministic.
	q := "zz=%27&aa=%22&os=x&OS=y"
	want := ""
	for i := 0; i < 50; i++ {
		_, err := profile.ParseQuery(q)
		require.Error(t, err)
		if i == 0 {
			want = err.Error()
		}
		require.Equal(t, want, err.Error())
	}
}

// TestParseQueryHostnameRFC1123: a hostname attribute is a host name,
// not just a string of DNS characters.
func TestParseQueryHostnameRFC1123(t *testing.T) {
	for q, want := range map[string]string{
		"hostname=Node1.LAB":    "node1.lab",
		"hostname=mp.lab.":      "mp.lab",
		"hostname=a":            "a",
		"hostname=1-2.x0":       "1-2.x0",
		"hostname=" + label(63): label(63),
	} {
		got, err := profile.ParseQuery(q)
		require.NoError(t, err, q)
		assert.Equal(t, want, got[profile.KeyHostname], q)
	}
	long := strings.Repeat(label(50)+".", 5) + "x" // 256 bytes
	for _, h := range []string{"-", "-a", "a-", "a..b", ".a", "a.-b", "a_b", label(64), long, "..", "a%20b", "a.."} {
		_, err := profile.ParseQuery("hostname=" + h)
		require.Error(t, err, h)
		assert.ErrorIs(t, err, profile.ErrBadRequest, h)
	}
	_, _, err := profile.Normalize("hostname", "a..b")
	assert.Error(t, err, "Normalize applies the same rule")
}

func label(n int) string { return strings.Repeat("a", n) }

// TestResolveValidatesFacts: facts from a FactSource (DHCP lease data in
// labserver, anything from a library user) are validated for what they
// claim to be; what is not is dropped and logged, never rendered.
func TestResolveValidatesFacts(t *testing.T) {
	st, err := profile.OpenFS(demo.FS(), nil, nil)
	require.NoError(t, err)
	facts := map[string]profile.Facts{
		"52:54:00:00:00:01": {Hostname: "x\"\n    - path: /etc/sudoers.d/evil", UUID: "4c4c4544-0043-3010-8058-b4c04f4c4e32x", IP: netip.MustParseAddr("fe80::1%eth0 x")},
		"52:54:00:00:00:02": {Hostname: "x init=/bin/sh", UUID: "0123456789abcdef0123456789abcdef0123", IP: netip.Addr{}},
		"52:54:00:00:00:03": {Hostname: "Node3.LAB", UUID: "4C4C4544-0043-3010-8058-B4C04F4C4E32", IP: netip.MustParseAddr("::ffff:172.22.10.99")},
		"52:54:00:00:00:04": {Hostname: "-bad", UUID: "{4c4c4544-0043-3010-8058-b4c04f4c4e32}"},
	}
	var logs bytes.Buffer
	r := &profile.Resolver{Store: st, Logger: slog.New(slog.NewTextHandler(&logs, nil)),
		Facts: profile.FactSourceFunc(func(_ context.Context, m hwaddr.MAC) (profile.Facts, bool) {
			f, ok := facts[m.String()]
			return f, ok
		})}
	get := func(mac string) *profile.Machine {
		m, err := r.Resolve(context.Background(), map[string]string{"mac": mac}, "mac="+mac)
		require.NoError(t, err)
		return m
	}
	m := get("52:54:00:00:00:01")
	assert.Empty(t, m.Hostname, "hostname with quote and newline dropped")
	assert.Empty(t, m.UUID)
	assert.False(t, m.IP.IsValid(), "address with a zone dropped")
	m = get("52:54:00:00:00:02")
	assert.Empty(t, m.Hostname, "hostname with a space dropped")
	assert.Empty(t, m.UUID, "hex that is not a UUID dropped")
	m = get("52:54:00:00:00:03")
	assert.Equal(t, "node3.lab", m.Hostname, "lower-cased")
	assert.Equal(t, "4c4c4544-0043-3010-8058-b4c04f4c4e32", m.UUID, "lower-cased")
	assert.Equal(t, netip.MustParseAddr("172.22.10.99"), m.IP, "IPv4-mapped address unmapped")
	m = get("52:54:00:00:00:04")
	assert.Empty(t, m.Hostname)
	assert.Empty(t, m.UUID, "not the canonical 8-4-4-4-12 form")

	out := logs.String()
	assert.Contains(t, out, "level=WARN")
	assert.Contains(t, out, "hostname")
	assert.Contains(t, out, "52:54:00:00:00:01")
	assert.NotContains(t, out, "\n    - path", "the value is logged quoted")
	assert.Equal(t, 7, strings.Count(out, "level=WARN"), "one warning per dropped fact:\n%s", out)

	// The request's own hostname still wins over facts; a group's metadata
	// too.
	m, err = r.Resolve(context.Background(), map[string]string{"mac": "52:54:00:00:00:01", "hostname": "given.lab"}, "")
	require.NoError(t, err)
	assert.Equal(t, "given.lab", m.Hostname)
	m, err = r.Resolve(context.Background(), map[string]string{"mac": "00:23:32:2f:40:3c"}, "")
	require.NoError(t, err)
	assert.Equal(t, "mp.lab", m.Hostname)
}

// TestResolveWithoutLogger: dropping works without a logger.
func TestResolveWithoutLogger(t *testing.T) {
	st, err := profile.OpenFS(demo.FS(), nil, nil)
	require.NoError(t, err)
	r := &profile.Resolver{Store: st, Facts: profile.FactSourceFunc(func(context.Context, hwaddr.MAC) (profile.Facts, bool) {
		return profile.Facts{Hostname: "a b"}, true
	})}
	m, err := r.Resolve(context.Background(), map[string]string{"mac": "52:54:00:00:00:09"}, "")
	require.NoError(t, err)
	assert.Empty(t, m.Hostname)
	assert.False(t, errors.Is(err, profile.ErrBadRequest))
}

// TestResolveNormalises: a library caller's MAC in any spelling resolves to
// the machine the inventory names, and a value that is not a MAC is an
// error, never the default group (issue #16).
func TestResolveNormalises(t *testing.T) {
	inv, err := profile.New(profile.Data{
		Profiles: []profile.Profile{{ID: "p", Boot: profile.Boot{Kernel: "/k"}}, {ID: "d", Boot: profile.Boot{Kernel: "/d"}}},
		Groups: []profile.Group{{ID: "m", Profile: "p", Selector: map[string]string{"mac": "52:54:00:89:d8:10"}},
			{ID: "default", Profile: "d"}},
	})
	require.NoError(t, err)
	r := &profile.Resolver{Store: inv}
	for _, attrs := range []map[string]string{
		{"mac": "52:54:00:89:D8:10"}, {"MAC": "52-54-00-89-d8-10"}, {"mac": "5254.0089.d810"},
	} {
		m, err := r.Resolve(context.Background(), attrs, "")
		require.NoError(t, err, "%v", attrs)
		assert.Equal(t, "m", m.Group.ID, "%v", attrs)
		assert.Equal(t, "52:54:00:89:d8:10", m.MAC.String())
	}
	for _, attrs := range []map[string]string{{"mac": "garbage"}, {"mac": "52:54:00:89:d8:10\n"}, {"mac": "52:54:00:89:d8:10", "MAC": "52:54:00:89:d8:11"}} {
		_, err := r.Resolve(context.Background(), attrs, "")
		assert.ErrorIs(t, err, profile.ErrBadRequest, "%v", attrs)
	}
}
