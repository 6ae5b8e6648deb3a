package ipxe

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/metalboot/metalboot/dhcpsrv"
	"github.com/metalboot/metalboot/profile"
)

// TestBootScript reads the boot script back as iPXE does, with the
// settings a machine has: the first fetch asks /ipxe with every
// attribute (iPXE URI-encodes the ones the machine reports itself), the
// fallback with uuid, mac and arch, and the query profile.ParseQuery
// reads is the machine's.
func TestBootScript(t *testing.T) {
	b, err := BootScript("http://10.99.0.1:8080/")
	require.NoError(t, err)
	settings := map[string]string{
		"uuid": "a0b1c2d3-0000-4000-8000-000000000001", "mac:hexhyp": "52-54-00-99-00-11",
		"domain:uristring": "lab", "hostname:uristring": "n1", "serial:uristring": "To%20be%20filled", "buildarch:uristring": "i386",
	}
	cmds, err := parseIPXE(string(b), settings)
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(cmds), 4)
	first := "http://10.99.0.1:8080/ipxe?uuid=a0b1c2d3-0000-4000-8000-000000000001&mac=52-54-00-99-00-11&domain=lab&hostname=n1&serial=To%20be%20filled&arch=i386"
	short := "http://10.99.0.1:8080/ipxe?uuid=a0b1c2d3-0000-4000-8000-000000000001&mac=52-54-00-99-00-11&arch=i386"
	assert.Equal(t, []string{"imgfetch", "--name", "metalboot", first}, cmds[0].Argv)
	assert.Equal(t, "||", cmds[0].Next)
	assert.Equal(t, []string{"imgfetch", "--name", "metalboot", short}, cmds[1].Argv)
	assert.Equal(t, []string{"goto", FailLabel}, cmds[2].Argv)
	assert.Equal(t, []string{"imgexec", "metalboot"}, cmds[3].Argv)
	assert.Equal(t, []string{"exit", "1"}, cmds[len(cmds)-1].Argv)

	u, err := url.Parse(first)
	require.NoError(t, err)
	_, err = profile.ParseQuery(u.RawQuery)
	assert.ErrorIs(t, err, profile.ErrBadRequest, "a serial with spaces: 400, hence the fallback")
	u, err = url.Parse(short)
	require.NoError(t, err)
	attrs, err := profile.ParseQuery(u.RawQuery)
	require.NoError(t, err)
	assert.Equal(t, "52:54:00:99:00:11", attrs["mac"])

	rel, err := BootScript("")
	require.NoError(t, err)
	cmds, err = parseIPXE(string(rel), nil)
	require.NoError(t, err)
	assert.Equal(t, "ipxe?uuid=&mac=&domain=&hostname=&serial=&arch=", cmds[0].Argv[3], "relative, as matchbox writes it")

	_, err = BootScript("http://x/${y}")
	assert.ErrorIs(t, err, ErrUnencodable)
	_, err = BootScript("http://x /")
	assert.ErrorIs(t, err, ErrUnencodable)
}

func TestBootHandler(t *testing.T) {
	n := 0
	h, err := BootHandler("http://10.99.0.1:8080", func(*http.Request) { n++ })
	require.NoError(t, err)
	for _, p := range []string{"/boot.ipxe", "/boot.ipxe.0"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, p, nil))
		assert.Equal(t, http.StatusOK, rec.Code)
		want, _ := BootScript("http://10.99.0.1:8080")
		assert.Equal(t, string(want), rec.Body.String())
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/boot.ipxe", nil))
	assert.Equal(t, http.StatusMethodNotAllowed, rec.Code)
	assert.Equal(t, 2, n)
}

func TestInstallBinaries(t *testing.T) {
	src := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(src, "undionly.kpxe"), []byte("bios"), 0o644))
	dir := t.TempDir()
	made, skipped, err := InstallBinaries(dir, src)
	require.NoError(t, err)
	assert.Equal(t, []string{"ipxe/undionly.kpxe"}, made)
	require.Len(t, skipped, 1)
	assert.Contains(t, skipped[0], "ipxe/ipxe.efi")
	assert.Contains(t, skipped[0], "apt-get install ipxe")
	b, err := os.ReadFile(filepath.Join(dir, "ipxe", "undionly.kpxe"))
	require.NoError(t, err)
	assert.Equal(t, "bios", string(b))
	for _, f := range made {
		found := false
		for _, v := range dhcpsrv.DefaultIPXEFiles {
			found = found || v == f
		}
		assert.True(t, found, "%s is where DHCP points firmware", f)
	}
}
