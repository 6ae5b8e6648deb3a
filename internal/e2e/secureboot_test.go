//go:build linux

package e2e_test

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/metalboot/metalboot/dhcpsrv/hwaddr"
	"github.com/metalboot/metalboot/internal/e2e"
)

// TestSecureBootArgs: a Secure Boot machine runs OVMF's Secure Boot build
// on q35 with SMM and a secure flash, and boots with OVMF's own PXE (shim
// fails verification of GRUB when downloaded through the iPXE ROM).
func TestSecureBootArgs(t *testing.T) {
	args := strings.Join(e2e.QEMUArgs(e2e.VMConfig{Firmware: e2e.UEFI, MAC: hwaddr.MustParse("52:54:00:99:00:31"), Tap: "tapsb", SecureBoot: true},
		"tcg", "/s.log", "/v.fd"), " ")
	for _, want := range []string{
		"-machine q35,smm=on",
		"-global driver=cfi.pflash01,property=secure,value=on",
		"file=" + e2e.OVMFCodeSecureBoot,
		"unit=1,file=/v.fd",
		",romfile=",
	} {
		assert.Contains(t, args, want)
	}
	assert.NotContains(t, args, e2e.OVMFCode+" ")
}

func TestSecureBootState(t *testing.T) {
	on, line, err := e2e.SecureBootState("noise\r\n\x1b[0mMETALBOOT-SECUREBOOT 06 00 00 00 01\r\nMETALBOOT-DHCP-BOUND")
	require.NoError(t, err)
	assert.True(t, on)
	assert.Equal(t, "METALBOOT-SECUREBOOT 06 00 00 00 01", line)
	on, _, err = e2e.SecureBootState("METALBOOT-SECUREBOOT 06 00 00 00 00\n")
	require.NoError(t, err)
	assert.False(t, on)
	for _, bad := range []string{"", "METALBOOT-SECUREBOOT unreadable\n", "METALBOOT-SECUREBOOT 06 00 00 00 02\n", "METALBOOT-SECUREBOOT 01\n"} {
		_, _, err := e2e.SecureBootState(bad)
		assert.Error(t, err, "%q", bad)
	}
}

// TestInitrdReadsSecureBoot: the initrd carries the EFI modules apart from
// the others and its /init reads the SecureBoot variable only on UEFI.
func TestInitrdReadsSecureBoot(t *testing.T) {
	var buf bytes.Buffer
	if err := e2e.BuildInitrd(&buf, e2e.InitrdConfig{}); err != nil {
		t.Skipf("busybox: %v", err)
	}
	s := buf.String()
	assert.Contains(t, s, "if [ -d /sys/firmware/efi ]; then")
	assert.Contains(t, s, "/sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c")
	assert.Contains(t, s, e2e.MarkerSecureBoot)
}

// TestStripSignature cuts the certificate table off a PE32+ image and
// clears its directory entry; an image without one is an error.
func TestStripSignature(t *testing.T) {
	const pe = 0x40
	img := make([]byte, 0x200)
	copy(img, "MZ")
	binary.LittleEndian.PutUint32(img[0x3c:], pe)
	copy(img[pe:], "PE\x00\x00")
	binary.LittleEndian.PutUint16(img[pe+24:], 0x20b)
	sec := pe + 24 + 112 + 4*8
	binary.LittleEndian.PutUint32(img[sec:], 0x180)
	binary.LittleEndian.PutUint32(img[sec+4:], 0x80)
	copy(img[0x180:], "certificate")
	dir := t.TempDir()
	src, dst := filepath.Join(dir, "signed"), filepath.Join(dir, "unsigned")
	require.NoError(t, os.WriteFile(src, img, 0o644))
	require.NoError(t, e2e.StripSignature(src, dst))
	out, err := os.ReadFile(dst)
	require.NoError(t, err)
	assert.Len(t, out, 0x180)
	assert.Zero(t, binary.LittleEndian.Uint64(out[sec:]))
	assert.Equal(t, img[:sec], out[:sec])
	assert.Error(t, e2e.StripSignature(dst, filepath.Join(dir, "again")), "no longer signed")
	assert.Error(t, e2e.StripSignature(filepath.Join(dir, "missing"), dst))
}
