package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"slices"
	"testing/fstest"
	"time"

	"github.com/metalboot/metalboot/dnssrv"
	"github.com/metalboot/metalboot/profile/demo"
	"github.com/metalboot/metalboot/tftpsrv"
)

// startTFTP serves the TFTP root with generated first-stage GRUB configs.
func (l *lab) startTFTP(ctx context.Context) error {
	var root fs.FS = fstest.MapFS{}
	if l.s.TFTPRoot != "" {
		r, err := tftpsrv.DirFS(l.s.TFTPRoot)
		if err != nil {
			return fmt.Errorf("tftp_root: %w", err)
		}
		root = r
	}
	first, err := l.firstStageTFTP()
	if err != nil {
		return fmt.Errorf("first stage: %w", err)
	}
	if root, err = l.mountAssetsTFTP(root); err != nil {
		return err
	}
	srv := &tftpsrv.Server{
		Addr:       l.s.TFTP,
		FS:         root,
		Handler:    tftpsrv.Chain(first, l.tftpConfig()),
		Logger:     l.log.With("component", "tftp"),
		OnTransfer: l.onTransfer,
	}
	pc, err := srv.Listen(ctx) // bind errors stop the start
	if err != nil {
		return err
	}
	l.setAddr("tftp", pc.LocalAddr().String())
	l.serve("tftp", func() error {
		defer pc.Close()
		return srv.Serve(ctx, pc)
	})
	return nil
}

func (l *lab) onTransfer(t tftpsrv.Transfer) {
	ip := t.Client.Addr().Unmap()
	if t.Err != nil {
		// GRUB probes several config names and firmware ends a transfer
		// once it has read tsize: neither is an error.
		if !errors.Is(t.Err, fs.ErrNotExist) && !errors.Is(t.Err, tftpsrv.ErrClientAbort) {
			l.metrics.errors.WithLabelValues("tftp").Inc()
		}
		return
	}
	l.eventIP(ip, stageTFTP, fmt.Sprintf("%s (%d bytes, %s)", t.Filename, t.Bytes, t.Duration.Round(time.Millisecond)))
	l.tftpAssetEvent(ip, t.Filename)
}

// startDNS serves the lab zone from the inventory, config records and DHCP
// leases, and forwards the rest to the configured upstreams.
func (l *lab) startDNS(ctx context.Context) error {
	var reverse []netip.Prefix
	if l.demo {
		reverse = append(reverse, netip.MustParsePrefix("172.22.10.0/24"))
	}
	if l.s.DHCP != nil {
		reverse = append(reverse, l.s.DHCP.Subnet)
	}
	for _, h := range l.store.Inventory().Hosts() {
		if h.IP.IsValid() && h.IP.Is4() {
			p, _ := h.IP.Prefix(24)
			if !slices.Contains(reverse, p) {
				reverse = append(reverse, p)
			}
		}
	}
	srv := &dnssrv.Server{
		Addr:       l.s.DNS,
		Zones:      []string{l.s.Domain + "."},
		ReverseFor: reverse,
		// Inventory and config names first: a DHCP client calling itself
		// "deploy" cannot take over deploy.lab.
		Records:   dnssrv.First(&l.dnsStatic, l.dnsLeases),
		Hostname:  l.serverName(),
		Upstreams: l.s.Upstreams,
		Allow:     l.s.DNSAllow, // empty: dnssrv.DefaultAllow(reverse), loopback and the lab
		Logger:    l.log.With("component", "dns"),
	}
	pc, ln, err := srv.Listen(ctx) // configuration and bind errors stop the start
	if err != nil {
		return err
	}
	l.setAddr("dns", pc.LocalAddr().String())
	l.serve("dns", func() error {
		defer pc.Close()
		defer ln.Close()
		return srv.Serve(ctx, pc, ln)
	})
	return nil
}

// serverName is the server's own DNS name (SOA and NS target).
func (l *lab) serverName() string {
	if l.demo {
		return demo.ServerName + "."
	}
	return "ns." + l.s.Domain + "."
}
