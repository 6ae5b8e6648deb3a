//go:build linux

package e2e

import (
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
