package main

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"strings"

	"github.com/miekg/dns"
	"github.com/pin/tftp/v3"

	"github.com/metalboot/metalboot/dhcpsrv/hwaddr"
	"github.com/metalboot/metalboot/dnssrv"
	"github.com/metalboot/metalboot/grubcfg"
	"github.com/metalboot/metalboot/tftpsrv"
)

// records is a DNS record source of the user's own.
type records struct{}

func (records) LookupHost(_ context.Context, name string) ([]netip.Addr, error) {
	if name == "node1.lab." {
		return []netip.Addr{netip.MustParseAddr("10.0.0.10")}, nil
	}
	return nil, nil
}

func (records) LookupAddr(_ context.Context, a netip.Addr) ([]string, error) {
	if a == netip.MustParseAddr("10.0.0.10") {
		return []string{"node1.lab."}, nil
	}
	return nil, nil
}

// serveTFTPAndDNS runs the real TFTP and DNS servers on loopback with the
// user's handler and records, and asks them with real clients.
func serveTFTPAndDNS(ctx context.Context) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	h, err := grubcfg.FirstStageTFTP(grubcfg.FirstStage{HTTPAddr: "10.0.0.1:8080"}, func(hwaddr.MAC, netip.AddrPort) {})
	check("first stage", err)
	ts := &tftpsrv.Server{Addr: "127.0.0.1:0", Handler: h}
	check("tftp validate", ts.Validate())
	pc, err := ts.Listen(ctx)
	check("tftp listen", err)
	defer pc.Close()
	go func() { _ = ts.Serve(ctx, pc) }()
	c, err := tftp.NewClient(pc.LocalAddr().String())
	check("tftp client", err)
	wt, err := c.Receive("grub/grub.cfg-01-52-54-00-12-34-56", "octet")
	check("tftp get", err)
	var b bytes.Buffer
	_, err = wt.WriteTo(&b)
	check("tftp read", err)
	if !strings.Contains(b.String(), "52:54:00:12:34:56") {
		check("tftp first stage", fmt.Errorf("no MAC in %q", b.String()))
	}
	fmt.Println("ok tftp: first stage for the MAC")

	ds := &dnssrv.Server{Addr: "127.0.0.1:0", Zones: []string{"lab."}, Records: records{}}
	check("dns validate", ds.Validate())
	dpc, dln, err := ds.Listen(ctx)
	check("dns listen", err)
	defer dpc.Close()
	defer dln.Close()
	go func() { _ = ds.Serve(ctx, dpc, dln) }()
	m := new(dns.Msg)
	m.SetQuestion("node1.lab.", dns.TypeA)
	r, err := dns.Exchange(m, dpc.LocalAddr().String())
	check("dns query", err)
	if len(r.Answer) != 1 || !strings.Contains(r.Answer[0].String(), "10.0.0.10") {
		check("dns answer", fmt.Errorf("%v", r))
	}
	fmt.Println("ok dns: the user's record")
}
