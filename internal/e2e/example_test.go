//go:build linux

package e2e_test

import (
	"bytes"
	"fmt"

	"github.com/metalboot/metalboot/internal/e2e"
)

// A newc archive is a sequence of 110-byte ASCII headers, each followed by
// the NUL-terminated name and the data, both padded to 4 bytes, and ends
// with a TRAILER!!! entry.
func ExampleCPIOWriter() {
	var buf bytes.Buffer
	c := e2e.NewCPIOWriter(&buf)
	_ = c.Dir("bin", 0o755)
	_ = c.File("init", 0o755, []byte("#!/bin/sh\necho hi\n"))
	_ = c.CharDev("dev/console", 0o600, 5, 1)
	_ = c.Close()
	fmt.Println(buf.Len()%4 == 0, string(buf.Bytes()[:6]))
	fmt.Println(bytes.Contains(buf.Bytes(), []byte("TRAILER!!!\x00")))
	// Output:
	// true 070701
	// true
}

// The initrd prints the fetched config between two marker lines; the
// serial log has carriage returns and other console output around it.
func ExampleExtractIgnition() {
	serial := "udhcpc: lease of 10.99.0.100 obtained\r\n" +
		e2e.MarkerIgnitionBegin + "\r\n" +
		`{"ignition":{"version":"3.3.0"}}` + "\r\n" +
		e2e.MarkerIgnitionEnd + "\r\n[    6.2] reboot: Power down\r\n"
	cfg, ok := e2e.ExtractIgnition(serial)
	fmt.Println(ok, cfg)
	// Output: true {"ignition":{"version":"3.3.0"}}
}
