//go:build linux

package e2e

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
)

// Debian's OVMF build with Secure Boot (package ovmf): the code needs SMM
// and a secure pflash; the VARS template has Microsoft's keys enrolled
// (KEK and db: the Windows and third-party UEFI CAs, which signed shim)
// and Secure Boot on.
const (
	OVMFCodeSecureBoot = "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd"
	OVMFVarsMS         = "/usr/share/OVMF/OVMF_VARS_4M.ms.fd"
)

// SecureBootArgs are the QEMU machine and firmware arguments of a UEFI
// machine with Secure Boot enforced, with vars (a fresh copy of
// [OVMFVarsMS]) as its VARS flash: q35 with SMM, the flash write-protected
// outside SMM (so the guest cannot change the Secure Boot variables), and
// OVMF's Secure Boot build.
func SecureBootArgs(vars string) []string {
	return []string{
		"-machine", "q35,smm=on",
		"-global", "driver=cfi.pflash01,property=secure,value=on",
		"-drive", "if=pflash,format=raw,unit=0,readonly=on,file=" + OVMFCodeSecureBoot,
		"-drive", "if=pflash,format=raw,unit=1,file=" + qemuOpt(vars),
	}
}

// varsTemplate is the VARS flash a UEFI machine starts from.
func varsTemplate(cfg VMConfig) string {
	if cfg.SecureBoot {
		return OVMFVarsMS
	}
	return OVMFVars
}

// NeedSecureBoot skips the test unless OVMF's Secure Boot build and its
// Microsoft-keys VARS template are installed (package ovmf).
func NeedSecureBoot(t testing.TB) {
	t.Helper()
	NeedFirmware(t, UEFI)
	for _, f := range []string{OVMFCodeSecureBoot, OVMFVarsMS} {
		if _, err := os.Stat(f); err != nil {
			t.Skipf("e2e: %s missing (apt-get install ovmf)", f)
		}
	}
}

// SecureBootState reads the line the initrd printed after
// [MarkerSecureBoot] on a serial console: the SecureBoot EFI variable's
// bytes (four bytes of attributes, then the value). It returns whether
// Secure Boot is on (value 1), and an error when the line is missing or
// the variable was unreadable or malformed.
func SecureBootState(serial string) (on bool, line string, err error) {
	s := StripANSI(serial)
	i := strings.Index(s, MarkerSecureBoot)
	if i < 0 {
		return false, "", errors.New("e2e: the initrd printed no " + MarkerSecureBoot + " line")
	}
	line, _, _ = strings.Cut(s[i:], "\n")
	line = strings.TrimSpace(line)
	f := strings.Fields(strings.TrimPrefix(line, MarkerSecureBoot))
	if len(f) != 5 {
		return false, line, fmt.Errorf("e2e: SecureBoot variable: want 4 attribute bytes and a value, got %q", line)
	}
	switch f[4] {
	case "01":
		return true, line, nil
	case "00":
		return false, line, nil
	}
	return false, line, fmt.Errorf("e2e: SecureBoot variable value %q", f[4])
}

// StripSignature writes to dst a copy of the PE image src (a signed EFI
// kernel or loader) without its Authenticode signature: the certificate
// table is cut off and its data-directory entry cleared, so Secure Boot
// must refuse the copy. It fails when src is not a signed PE image.
func StripSignature(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("e2e: %w", err)
	}
	le := binary.LittleEndian
	if len(b) < 0x40 || string(b[:2]) != "MZ" {
		return fmt.Errorf("e2e: %s: not a PE image", src)
	}
	pe := int(le.Uint32(b[0x3c:]))
	if pe+24+2 > len(b) || string(b[pe:pe+4]) != "PE\x00\x00" {
		return fmt.Errorf("e2e: %s: no PE header", src)
	}
	dirs := pe + 24 + 96 // PE32 optional header: data directories
	if le.Uint16(b[pe+24:]) == 0x20b {
		dirs = pe + 24 + 112 // PE32+
	}
	sec := dirs + 4*8 // entry 4: the certificate table (a file offset)
	if sec+8 > len(b) {
		return fmt.Errorf("e2e: %s: truncated PE header", src)
	}
	off, size := int(le.Uint32(b[sec:])), int(le.Uint32(b[sec+4:]))
	if off == 0 || size == 0 || off+size > len(b) {
		return fmt.Errorf("e2e: %s: not signed (no certificate table)", src)
	}
	out := append([]byte(nil), b[:off]...)
	le.PutUint32(out[sec:], 0)
	le.PutUint32(out[sec+4:], 0)
	if err := os.WriteFile(dst, out, 0o644); err != nil {
		return fmt.Errorf("e2e: %w", err)
	}
	return nil
}
