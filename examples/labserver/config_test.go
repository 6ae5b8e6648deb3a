package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/metalboot/metalboot/dhcpsrv"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "lab.yaml")
	require.NoError(t, os.WriteFile(f, []byte(body), 0o644))
	return f
}

func TestSampleConfigLoads(t *testing.T) {
	c, err := loadConfig("lab.yaml")
	require.NoError(t, err)
	// The sample names directories that do not exist here; blank them.
	c.Data, c.Assets, c.TFTPRoot = "", "", ""
	s, err := c.resolve()
	require.NoError(t, err)
	assert.Equal(t, "10.99.0.1:8080", s.HTTP)
	assert.Equal(t, "http://10.99.0.1:8080", s.BaseURL.String())
	require.NotNil(t, s.DHCP)
	assert.Equal(t, "br0", s.DHCP.Interface)
	assert.Equal(t, "10.99.0.200", s.DHCP.Range[1].String())
	assert.Len(t, s.DHCP.Reservations, 1)
	assert.Equal(t, "lab", s.Domain)

	// A copied sample is never less safe than no config at all: admin
	// actions from loopback only, Ignition configs only to lease holders.
	for _, p := range s.AdminAllow {
		assert.True(t, p.Addr().IsLoopback(), "sample admin_allow holds %s: only loopback belongs there", p)
	}
	assert.True(t, s.IgnitionLeased, "sample serves Ignition configs to lease holders only")
	def, err := (&Config{}).resolve()
	require.NoError(t, err)
	assert.ElementsMatch(t, def.AdminAllow, s.AdminAllow, "sample admin_allow equals the default")

	// The sample's boot_files say "defaults shown": they must be.
	want := map[string]dhcpsrv.Arch{"bios": dhcpsrv.ArchBIOS, "efi64": dhcpsrv.ArchEFIx64, "arm64": dhcpsrv.ArchEFIARM64, "http": dhcpsrv.ArchEFIx64HTTP}
	require.Len(t, s.DHCP.BootFiles, len(want))
	for k, arch := range want {
		assert.Equal(t, dhcpsrv.DefaultBootFiles[arch], s.DHCP.BootFiles[k], "boot_files.%s", k)
	}
}

func TestConfigErrorsNameKeyAndLine(t *testing.T) {
	tests := []struct {
		name, body string
		want       []string
	}{
		{"unknown key", "http: 127.0.0.1:8080\nhtpp: x\n", []string{"line 2", `unknown key "htpp" at the top level (did you mean "http"?)`}},
		{"unknown nested key", "dns_zone:\n  domian: lab\n", []string{`line 2: unknown key "domian" under dns_zone (did you mean "domain"?)`}},
		{"list for a mapping", "dns_zone: [1, 2]\n", []string{"line 1: dns_zone: want a mapping of keys, found a list"}},
		{"number for a list", "dhcp:\n  interface: br0\n  range: 5\n", []string{"line 3: dhcp.range: want a list of strings, found a number (5)"}},
		{"bad address", "http: 127.0.0.1:8080\ntftp: nonsense\n", []string{"line 2: tftp:", `"nonsense": want host:port`}},
		{"bad range", "dhcp:\n  interface: br0\n  server_ip: 10.99.0.1\n  subnet: 10.99.0.0/24\n  range: [10.99.0.100, 10.98.0.200]\n", []string{"line 5: dhcp.range:", "inside 10.99.0.0/24"}},
		{"no interface", "dhcp:\n  server_ip: 10.99.0.1\n", []string{"dhcp.interface: required"}},
		{"bad lease", "dhcp:\n  interface: br0\n  server_ip: 10.99.0.1\n  subnet: 10.99.0.0/24\n  range: [10.99.0.100, 10.99.0.200]\n  lease_time: 5\n", []string{"line 6: dhcp.lease_time:"}},
		{"bad lease sync", "dhcp:\n  interface: br0\n  server_ip: 10.99.0.1\n  subnet: 10.99.0.0/24\n  range: [10.99.0.100, 10.99.0.200]\n  lease_sync: never\n", []string{"line 6: dhcp.lease_sync:", `"ack"`}},
		{"base url", "base_url: https://x\n", []string{"line 1: base_url:", "GRUB has no TLS"}},
		{"all addresses", "http: 0.0.0.0:8080\n", []string{"base_url: required"}},
		{"no http", "http: \"\"\n", []string{"http: the HTTP server cannot be disabled"}},
		{"data dir", "data: /nonexistent/metalboot\n", []string{"line 1: data:", "not a directory"}},
		{"bad yaml", "http: [\n", []string{"lab.yaml"}},
		{"reservation", "dhcp:\n  interface: br0\n  server_ip: 10.99.0.1\n  subnet: 10.99.0.0/24\n  range: [10.99.0.100, 10.99.0.200]\n  reservations:\n    - {mac: zz, ip: 10.99.0.5}\n", []string{"dhcp.reservations", "invalid MAC"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := writeConfig(t, tc.body)
			var out, errb bytes.Buffer
			code := run([]string{"-config", f}, &out, &errb)
			assert.Equal(t, exitConfig, code)
			for _, w := range tc.want {
				assert.Contains(t, errb.String(), w)
			}
			assert.Equal(t, 1, bytes.Count(errb.Bytes(), []byte("\n")), "one clear line: %q", errb.String())
			assert.NotRegexp(t, `main\.|DNSConfig|\[\]string|!!`, errb.String(), "Go types and YAML tags are not the operator's words")
		})
	}
}

func TestBadFlagsExit2(t *testing.T) {
	var out, errb bytes.Buffer
	assert.Equal(t, exitConfig, run([]string{"-nope"}, &out, &errb))
	assert.Equal(t, exitConfig, run([]string{"-http", "localhost"}, &out, &errb))
	assert.Contains(t, errb.String(), "http:")
	assert.Equal(t, exitConfig, run([]string{"extra"}, &out, &errb))
}

func TestFlagsOverrideFile(t *testing.T) {
	f := writeConfig(t, "http: 10.0.0.1:80\ndns: 127.0.0.1:53\n")
	c, err := loadConfig(f)
	require.NoError(t, err)
	empty := ""
	c.DNS = &empty // what -dns "" does
	httpAddr := "127.0.0.1:18080"
	c.HTTP = &httpAddr
	s, err := c.resolve()
	require.NoError(t, err)
	assert.Equal(t, "", s.DNS)
	assert.Equal(t, "127.0.0.1:18080", s.HTTP)
	assert.Equal(t, "http://127.0.0.1:18080", s.BaseURL.String())
}

func FuzzConfig(f *testing.F) {
	b, err := os.ReadFile("lab.yaml")
	require.NoError(f, err)
	f.Add(b)
	f.Add([]byte("dhcp:\n  interface: br0\n"))
	f.Add([]byte("http: [\n"))
	f.Fuzz(func(t *testing.T, body []byte) {
		dir := t.TempDir()
		file := filepath.Join(dir, "c.yaml")
		if err := os.WriteFile(file, body, 0o644); err != nil {
			t.Fatal(err)
		}
		c, err := loadConfig(file)
		if err != nil {
			return
		}
		_, _ = c.resolve() // must not panic
	})
}
