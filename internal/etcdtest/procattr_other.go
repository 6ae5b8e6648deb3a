//go:build !linux

package etcdtest

import "syscall"

// procAttr: no parent death signal outside Linux; Stop and the test's
// cleanup stop the members.
func procAttr() *syscall.SysProcAttr { return nil }
