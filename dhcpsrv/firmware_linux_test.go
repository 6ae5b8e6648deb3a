package dhcpsrv_test

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/metalboot/metalboot/dhcpsrv"
	"github.com/metalboot/metalboot/dhcpsrv/hwaddr"
	"github.com/metalboot/metalboot/internal/e2e"
	"github.com/metalboot/metalboot/tftpsrv"
)

// TestFirmwareAsksForItsBootFile powers on a UEFI machine (OVMF's own EDK2
// PXE client, no iPXE ROM) and a BIOS machine (SeaBIOS + iPXE ROM) under QEMU
// in a test namespace. Each must accept dhcpsrv's answer and fetch the GRUB
// image of its architecture from the next server, here a tftpsrv serving
// files of that size (not executable, so the boot stops there): the transfer
// must complete, which also proves both firmware TFTP clients take
// tftpsrv's default send-ahead window.
func TestFirmwareAsksForItsBootFile(t *testing.T) {
	if testing.Short() {
		t.Skip("boots QEMU (TCG): skipped in -short mode")
	}
	t.Parallel() // ~25 s of firmware under TCG: overlap with the other tests
	e2e.NeedFirmware(t, e2e.UEFI)
	el := e2e.NewLab(t) // br0 with 10.99.0.1/24
	l := &lab{t: t, srv: el.NS}
	el.Tap("tapefi")
	el.Tap("tapbios")
	var leases sync.Map
	l.serve(labServer(func(s *dhcpsrv.Server) {
		s.OnLease = func(x dhcpsrv.Lease) { leases.Store(x.MAC.String(), x) }
		s.OnDiscover = func(e dhcpsrv.Event) {
			t.Logf("DISCOVER %s arch %s vendor %q uuid %s offered %s file %q", e.MAC, e.Arch, e.VendorClass, e.UUID, e.Offered, e.BootFile)
		}
		s.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}))

	// TFTP on the next server (10.99.0.1:69), with boot files the size of
	// Debian's GRUB images.
	files := fstest.MapFS{
		"grub/x86_64-efi/core.efi": {Data: bytes.Repeat([]byte("efi!"), 245760/4)},
		"grub/i386-pc/core.0":      {Data: bytes.Repeat([]byte("bios"), 51020/4)},
	}
	got := make(chan tftpsrv.Transfer, 16)
	var tftp net.PacketConn
	require.NoError(t, l.srv.Do(func() error {
		var err error
		tftp, err = net.ListenPacket("udp4", "10.99.0.1:69")
		return err
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	// SinglePort: the listening socket was opened inside the namespace,
	// but a per-transfer socket would be opened by whatever OS thread runs
	// the transfer's goroutine, in the host's namespace.
	tsrv := &tftpsrv.Server{FS: files, SinglePort: true, OnTransfer: func(tr tftpsrv.Transfer) { got <- tr }}
	served := make(chan error, 1)
	go func() { served <- tsrv.Serve(ctx, tftp) }()
	defer func() { cancel(); <-served }()
	// The BIOS machine's iPXE waits ~15 s for an IPv6 router unless
	// someone answers its router solicitations.
	ra := &dhcpsrv.RouterAdvertiser{Interface: e2e.BridgeName}
	var raConn net.PacketConn
	require.NoError(t, l.srv.Do(func() error {
		var err error
		raConn, err = ra.Listen(ctx)
		return err
	}))
	raDone := make(chan error, 1)
	go func() { raDone <- ra.Serve(ctx, raConn) }()
	defer func() {
		cancel()
		assert.NoError(t, <-raDone)
		raConn.Close()
		t.Logf("router advertiser: %+v", ra.Stats())
	}()

	dir := t.TempDir()
	want := map[string]string{
		"52:54:00:bb:00:01": "grub/x86_64-efi/core.efi",
		"52:54:00:bb:00:02": "grub/i386-pc/core.0",
	}
	uuids := map[string]string{
		"52:54:00:bb:00:01": "12345678-9abc-def0-1122-334455667701",
		"52:54:00:bb:00:02": "12345678-9abc-def0-1122-334455667702",
	}
	vms := []*e2e.VM{
		e2e.StartVM(t, l.srv, e2e.VMConfig{Name: "efi", Firmware: e2e.UEFI, UseOVMFPXE: true,
			MAC: hwaddr.MustParse("52:54:00:bb:00:01"), UUID: uuids["52:54:00:bb:00:01"],
			Tap: "tapefi", Dir: dir, MemoryMB: 256, Timeout: 90 * time.Second}),
		e2e.StartVM(t, l.srv, e2e.VMConfig{Name: "bios", Firmware: e2e.BIOS,
			MAC: hwaddr.MustParse("52:54:00:bb:00:02"), UUID: uuids["52:54:00:bb:00:02"],
			Tap: "tapbios", Dir: dir, MemoryMB: 256, Timeout: 90 * time.Second}),
	}

	seen := map[string]bool{}
	for len(seen) < len(want) {
		select {
		case tr := <-got:
			t.Logf("TFTP %q to %s: %d bytes, blksize %d, window %d (windowsize option: %v), %d retransmits, err %v",
				tr.Filename, tr.Client, tr.Bytes, tr.BlockSize, tr.Window, tr.WindowSize, tr.Retransmits, tr.Err)
			if tr.Err != nil {
				continue // e.g. EDK2 reads tsize, ends that transfer, then asks again
			}
			for mac, file := range want {
				v, ok := leases.Load(mac)
				if !ok || tr.Filename != file || tr.Client.Addr() != v.(dhcpsrv.Lease).IP {
					continue
				}
				seen[mac] = true
				assert.Equal(t, int64(len(files[file].Data)), tr.Bytes, "%s: whole file sent", mac)
				assert.Equal(t, uuids[mac], v.(dhcpsrv.Lease).UUID, "option 97 read as QEMU's -uuid")
			}
		case <-ctx.Done():
			for _, vm := range vms {
				t.Logf("%s serial console:\n%s\nQEMU: %s", vm.Config.Name, vm.Serial(), vm.Output())
			}
			t.Fatalf("firmware did not fetch its boot file in time; seen %v", seen)
		}
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}
