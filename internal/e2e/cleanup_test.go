//go:build linux

package e2e_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/metalboot/metalboot/dhcpsrv/hwaddr"
	"github.com/metalboot/metalboot/internal/e2e"
)

func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// A zombie is as good as gone.
	f := strings.Fields(string(b))
	return len(f) > 2 && f[2] != "Z"
}

// TestLabCleansUp boots a machine that can never finish (there is no DHCP
// server), lets the wait time out, and checks that once the test's cleanups
// ran, QEMU, its `timeout` wrapper, the server process and the namespace are
// all gone.
func TestLabCleansUp(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e: starts QEMU; skipped with -short")
	}
	e2e.NeedFirmware(t, e2e.BIOS)
	var nsName string
	var pids []int
	t.Run("boot-without-server", func(t *testing.T) {
		lab := e2e.NewLab(t)
		nsName = lab.NS.Name
		lab.Tap("tapx")
		srv := lab.Start("sleeper", "sleep", "300")
		vm := e2e.StartVM(t, lab.NS, e2e.VMConfig{
			Name: "x", Firmware: e2e.BIOS, MAC: hwaddr.MustParse("52:54:00:99:00:99"), Tap: "tapx",
			Dir: lab.Dir, Timeout: 60 * time.Second,
		})
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_, err := vm.WaitFor(ctx, e2e.MarkerIgnitionEnd)
		require.ErrorIs(t, err, context.DeadlineExceeded)
		assert.False(t, errors.Is(err, e2e.ErrVMExited))
		children, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", vm.Pid(), vm.Pid()))
		require.NoError(t, err)
		pids = append(pids, vm.Pid(), srv.Pid())
		for _, c := range strings.Fields(string(children)) {
			pid, err := strconv.Atoi(c)
			require.NoError(t, err)
			pids = append(pids, pid) // QEMU itself
		}
		require.Len(t, pids, 3, "timeout should have exactly one child, QEMU")
		for _, pid := range pids {
			assert.True(t, alive(pid), "pid %d running during the test", pid)
		}
	})
	for _, pid := range pids {
		assert.False(t, alive(pid), "pid %d still running after cleanup", pid)
	}
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	require.NoError(t, err)
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			assert.NotEqual(t, nsName, f[0], "namespace still exists")
		}
	}
}
