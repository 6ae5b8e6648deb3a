package etcdtest

import "syscall"

// procAttr makes a member die with the test process (Linux: the parent
// death signal), so no member outlives a test binary killed mid-run.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
