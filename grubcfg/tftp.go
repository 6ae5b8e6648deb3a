package grubcfg

import (
	"context"
	"net/netip"

	"github.com/metalboot/metalboot/dhcpsrv/hwaddr"
	"github.com/metalboot/metalboot/tftpsrv"
)

// FirstStageTFTP returns a tftpsrv.Handler that serves the first-stage
// configuration over TFTP, where GRUB's network image (made by
// [MakeNetDir]) looks for it right after it starts. It answers every name
// [FirstStageName] accepts, in any directory (GRUB's prefix):
//
//	grub/grub.cfg-01-<mac>   f pinned to that MAC (FirstStage.MAC; unless
//	                         f.MAC is set), so GRUB stops probing here
//	grub/grub.cfg-<HEX IP>…  f as given
//	grub/grub.cfg            f as given
//
// Every other name is left to the server's file system (the handler
// returns tftpsrv.ErrNotHandled), so GRUB's modules and images come from
// the TFTP root:
//
//	fsys, _ := tftpsrv.DirFS("/srv/tftp") // made by MakeNetDir
//	h, err := grubcfg.FirstStageTFTP(grubcfg.FirstStage{HTTPAddr: "10.99.0.1:8080"}, nil)
//	srv := &tftpsrv.Server{FS: fsys, Handler: h}
//
// It renders f once: a bad FirstStage is an error here, at start-up, not
// when a machine boots. The answer for a pinned name is rendered per
// request (a few hundred bytes).
//
// onMAC, when not nil, is called for every grub.cfg-01-<mac> request with
// the MAC and the client's address and port, before the answer goes out:
// the one moment a TFTP server learns which machine is at an address
// (labserver's timeline names later transfers by it). The MAC comes from
// the network: it is well-formed (six hexadecimal pairs), not
// authenticated. onMAC runs on the transfer's goroutine and must not
// block.
func FirstStageTFTP(f FirstStage, onMAC func(mac hwaddr.MAC, client netip.AddrPort)) (tftpsrv.Handler, error) {
	body, err := f.Render()
	if err != nil {
		return nil, err
	}
	return &firstStageTFTP{f: f, body: body, onMAC: onMAC}, nil
}

type firstStageTFTP struct {
	f     FirstStage
	body  []byte
	onMAC func(hwaddr.MAC, netip.AddrPort)
}

// ServeTFTP implements tftpsrv.Handler.
func (h *firstStageTFTP) ServeTFTP(_ context.Context, req *tftpsrv.Request) ([]byte, error) {
	mac, ok := FirstStageName(req.Filename)
	if !ok {
		return nil, tftpsrv.ErrNotHandled
	}
	if mac.IsZero() {
		return h.body, nil
	}
	if h.onMAC != nil {
		h.onMAC(mac, req.Client)
	}
	if !h.f.MAC.IsZero() {
		return h.body, nil
	}
	pinned := h.f
	pinned.MAC = mac
	return pinned.Render() // cannot fail: f rendered, and mac is a valid MAC
}
