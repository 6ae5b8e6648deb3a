package grubcfg

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/metalboot/metalboot/dhcpsrv/hwaddr"
)

func TestFirstStageGolden(t *testing.T) {
	for _, tc := range []struct {
		name string
		f    FirstStage
	}{
		{"firststage", FirstStage{HTTPAddr: "10.99.0.1:8080"}},
		{"firststage-serial", FirstStage{HTTPAddr: "10.99.0.1:8080", Serial: &Serial{}, OnFailure: FailExit}},
		{"firststage-serial-efi", FirstStage{HTTPAddr: "deploy.lab", Serial: &Serial{Unit: 1, Speed: 9600, EFI: true}, OnFailure: FailReboot, Timeout: 30}},
		{"firststage-pinned", FirstStage{HTTPAddr: "10.99.0.1:8080", Path: "/metalboot/grub", MAC: hwaddr.MustParse("52:54:00:12:34:56")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := tc.f.Render()
			require.NoError(t, err)
			golden(t, tc.name, b)
			requireGRUBAccepts(t, string(b))
		})
	}
}

// TestFirstStageMeasuredLines pins the lines measured to work on real GRUB
// 2.06 (see DESIGN.md and the QEMU notes): the root device with brackets
// and port, and the double-quoted configfile path GRUB sends as
// "GET /grub?mac=52:54:00:…".
func TestFirstStageMeasuredLines(t *testing.T) {
	b, err := FirstStage{HTTPAddr: "10.99.0.1:8080", Serial: &Serial{}}.Render()
	require.NoError(t, err)
	s := string(b)
	assert.Contains(t, s, "\ninsmod net\ninsmod http\n")
	assert.Contains(t, s, "if [ \"$grub_platform\" = \"efi\" ]; then\n  insmod efinet\n")
	assert.Contains(t, s, "\nset root='(http,10.99.0.1:8080)'\n")
	assert.Contains(t, s, "\nconfigfile \"/grub?mac=${net_default_mac}&arch=${grub_cpu}\"\n")
	assert.Contains(t, s, "  serial --unit=0 --speed=115200\n  terminal_input serial console\n  terminal_output serial console\n")
	// configfile returns silently on failure: an echo follows it.
	toks, err := lexGRUB(s)
	require.NoError(t, err)
	cmds := commands(toks)
	for i, c := range cmds {
		if c[0] == "configfile" {
			require.Less(t, i+1, len(cmds))
			assert.Equal(t, "echo", cmds[i+1][0])
			assert.Equal(t, []string{"configfile", "/grub?mac=<VAR${net_default_mac}>&arch=<VAR${grub_cpu}>"}, c)
		}
	}
	// '&' (a GRUB metacharacter) only inside double quotes.
	for _, line := range strings.Split(s, "\n") {
		if i := strings.IndexByte(line, '&'); i >= 0 {
			assert.Equal(t, 1, strings.Count(line[:i], "\"")%2, "unquoted & in %q", line)
		}
	}
}

func TestFirstStageErrors(t *testing.T) {
	for _, f := range []FirstStage{
		{},
		{HTTPAddr: "10.0.0.1:0"},
		{HTTPAddr: "10.0.0.1:99999"},
		{HTTPAddr: "a,b:80"},
		{HTTPAddr: "a)b:80"},
		{HTTPAddr: "x:80", Path: "grub"},
		{HTTPAddr: "x:80", Path: "/grub$x"},
		{HTTPAddr: "x:80", Path: "/a/../grub"},
		{HTTPAddr: "x:80", Path: "/grub\"; reboot"},
		{HTTPAddr: "x:80", Serial: &Serial{Unit: -1}},
		{HTTPAddr: "x:80", OnFailure: 7},
		{HTTPAddr: "x:80", Timeout: -1},
	} {
		_, err := f.Render()
		assert.ErrorIs(t, err, ErrBadOption, "%+v", f)
	}
}

func TestFirstStageName(t *testing.T) {
	mac := hwaddr.MustParse("52:54:00:12:34:56")
	for _, tc := range []struct {
		name string
		mac  hwaddr.MAC
		ok   bool
	}{
		{"grub/grub.cfg-01-52-54-00-12-34-56", mac, true},
		{"/grub/grub.cfg-01-52-54-00-12-34-56", mac, true},
		{"grub.cfg-01-52-54-00-12-34-56", mac, true},
		{"grub/grub.cfg-01-52-54-00-12-34-5G", hwaddr.MAC{}, false},
		{"grub/grub.cfg-01-52:54:00:12:34:56", hwaddr.MAC{}, false},
		{"grub/grub.cfg-0A630064", hwaddr.MAC{}, true},
		{"grub/grub.cfg-0A63006", hwaddr.MAC{}, true},
		{"grub/grub.cfg-0", hwaddr.MAC{}, true},
		{"grub/grub.cfg", hwaddr.MAC{}, true},
		{"grub/grub.cfg-", hwaddr.MAC{}, false},
		{"grub/grub.cfg-0a630064", hwaddr.MAC{}, false},
		{"grub/grub.cfg-0A6300640", hwaddr.MAC{}, false},
		{"grub/grub.cfgx", hwaddr.MAC{}, false},
		{"grub/x86_64-efi/core.efi", hwaddr.MAC{}, false},
		{"", hwaddr.MAC{}, false},
	} {
		m, ok := FirstStageName(tc.name)
		assert.Equal(t, tc.ok, ok, tc.name)
		assert.Equal(t, tc.mac, m, tc.name)
	}
}

func TestFirstStageNames(t *testing.T) {
	mac := hwaddr.MustParse("52:54:00:12:34:56")
	names := FirstStageNames("grub", mac, netip.MustParseAddr("10.99.0.100"))
	assert.Equal(t, []string{
		"grub/grub.cfg-01-52-54-00-12-34-56",
		"grub/grub.cfg-0A630064", "grub/grub.cfg-0A63006", "grub/grub.cfg-0A6300", "grub/grub.cfg-0A630",
		"grub/grub.cfg-0A63", "grub/grub.cfg-0A6", "grub/grub.cfg-0A", "grub/grub.cfg-0",
		"grub/grub.cfg",
	}, names)
	for i, n := range names {
		m, ok := FirstStageName(n)
		assert.True(t, ok, n)
		assert.Equal(t, i == 0, m == mac, n)
	}
	assert.Equal(t, []string{"grub.cfg"}, FirstStageNames("", hwaddr.MAC{}, netip.Addr{}))
}

func TestFirstStageHandler(t *testing.T) {
	_, err := FirstStageHandler(FirstStage{})
	require.True(t, errors.Is(err, ErrBadOption))

	h, err := FirstStageHandler(FirstStage{HTTPAddr: "10.99.0.1:8080"})
	require.NoError(t, err)
	srv := httptest.NewServer(h)
	defer srv.Close()

	get := func(path string) (*http.Response, string) {
		resp, err := http.Get(srv.URL + path)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp, string(b)
	}
	resp, body := get("/grub.cfg")
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "text/plain; charset=utf-8", resp.Header.Get("Content-Type"))
	assert.Contains(t, body, `configfile "/grub?mac=${net_default_mac}&arch=${grub_cpu}"`)
	requireGRUBAccepts(t, body)

	_, body = get("/grub/grub.cfg-01-52-54-00-12-34-56")
	assert.Contains(t, body, "configfile '/grub?mac=52:54:00:12:34:56&arch='\"${grub_cpu}\"")
	requireGRUBAccepts(t, body)

	resp, err = http.Post(srv.URL+"/grub.cfg", "text/plain", nil)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
}
