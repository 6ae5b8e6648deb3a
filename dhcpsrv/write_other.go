//go:build !linux

package dhcpsrv

import "os"

// writeAll writes data to the journal file f (see write_linux.go for why
// Linux differs).
func writeAll(f *os.File, data []byte) error {
	_, err := f.Write(data)
	return err
}
