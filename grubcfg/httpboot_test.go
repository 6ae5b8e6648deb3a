package grubcfg

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/metalboot/metalboot/dhcpsrv"
)

func TestHTTPBootEarlyConfig(t *testing.T) {
	cfg, err := HTTPBootEarlyConfig("10.0.0.1:8080")
	require.NoError(t, err)
	require.Equal(t, "net_bootp\nset net_default_interface=efinet0:dhcp\nset net_default_mac=$net_efinet0_dhcp_mac\nset root=http,10.0.0.1:8080\nset prefix=(http,10.0.0.1:8080)/grub\n", cfg)
	requireGRUBAccepts(t, cfg)
	for _, bad := range []string{"", "10.0.0.1:0", "a b:80", "x;reboot:80", "$(x):80", "h:99999"} {
		_, err := HTTPBootEarlyConfig(bad)
		require.Error(t, err, "%q", bad)
	}
}

// TestMakeHTTPBootImage builds the image with Debian's grub-mkimage and
// checks it is a PE/COFF file carrying the early config. (The labserver e2e
// boots it in OVMF.)
func TestMakeHTTPBootImage(t *testing.T) {
	const dir = "/usr/lib/grub/x86_64-efi"
	if _, err := exec.LookPath("grub-mkimage"); err != nil {
		t.Skip("grub-mkimage not installed (apt-get install grub-common)")
	}
	if _, err := os.Stat(filepath.Join(dir, "efinet.mod")); err != nil {
		t.Skip("GRUB x86_64-efi modules missing (apt-get install grub-efi-amd64-bin)")
	}
	img, ok := BootFilePath(dhcpsrv.ArchEFIx64HTTP)
	require.True(t, ok)
	out := filepath.Join(t.TempDir(), filepath.FromSlash(img))
	require.NoError(t, MakeHTTPBootImage(context.Background(), dir, out, "10.0.0.1:8080"))
	b, err := os.ReadFile(out)
	require.NoError(t, err)
	require.True(t, bytes.HasPrefix(b, []byte("MZ")), "PE/COFF header")
	require.Contains(t, string(b), "set prefix=(http,10.0.0.1:8080)/grub")
	err = MakeHTTPBootImage(context.Background(), dir, out, "bad host:80")
	require.Error(t, err)
	require.True(t, strings.Contains(err.Error(), "HTTP boot server"), err.Error())
}
