// Command minimal is the smallest complete network-boot server built from
// metalboot's public packages: DHCP (with PXE boot options) on one
// interface, TFTP for GRUB's images and first stage, and HTTP for /grub,
// /ignition and /assets/, all from a matchbox data directory. Start here;
// examples/labserver adds config files, DNS, the timeline, install state
// and metrics.
//
//	minimal -data ./data -assets ./assets -tftp-root ./tftp \
//	    -interface br0 -server-ip 10.99.0.1 -range 10.99.0.100-10.99.0.200
//
// Make the TFTP root with `labserver -make-tftp-root` (grubcfg.MakeNetDir).
// With DHCP, a machine's Ignition config goes only to the address leased to
// it; without -interface there is no DHCP (another DHCP server points
// machines here) and configs go to any client. SIGINT or SIGTERM stops it.
package main

import (
	"context"
	"flag"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/metalboot/metalboot/dhcpsrv"
	"github.com/metalboot/metalboot/dhcpsrv/hwaddr"
	"github.com/metalboot/metalboot/grubcfg"
	"github.com/metalboot/metalboot/ignition"
	"github.com/metalboot/metalboot/profile"
	"github.com/metalboot/metalboot/tftpsrv"
)

func main() {
	data := flag.String("data", "data", "matchbox data directory (profiles/, groups/, ignition/)")
	assets := flag.String("assets", "assets", "directory served at /assets/")
	tftpRoot := flag.String("tftp-root", "tftp", "TFTP root made by grubcfg.MakeNetDir")
	iface := flag.String("interface", "", "DHCP on this interface only (empty: no DHCP)")
	serverIP := flag.String("server-ip", "10.99.0.1", "this server's address on the provisioning network")
	prefix := flag.String("subnet", "10.99.0.0/24", "the provisioning subnet")
	pool := flag.String("range", "10.99.0.100-10.99.0.200", "DHCP addresses to hand out")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(*data, *assets, *tftpRoot, *iface, *serverIP, *prefix, *pool, log); err != nil {
		log.Error("minimal", "err", err)
		os.Exit(1)
	}
}

func run(data, assets, tftpRoot, iface, serverIP, prefix, pool string, log *slog.Logger) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ip, err := netip.ParseAddr(serverIP)
	if err != nil {
		return err
	}
	httpAddr := netip.AddrPortFrom(ip, 8080).String()

	// The inventory, and the two HTTP renderers on top of it.
	ign := &ignition.Handler{Logger: log}
	store, err := profile.OpenFS(os.DirFS(data), ign.Check, log)
	if err != nil {
		return err
	}
	res := &profile.Resolver{Store: store, BaseURL: "http://" + httpAddr, Logger: log}
	ign.Resolver = res
	mux := http.NewServeMux()
	mux.Handle("GET /grub", &grubcfg.Handler{Resolver: res, Logger: log})
	mux.Handle("GET /ignition", ign)
	mux.Handle("GET /assets/", http.StripPrefix("/assets", http.FileServerFS(os.DirFS(assets))))

	// Open every socket first: a bind error stops the start, nothing
	// half-runs.
	ln, err := net.Listen("tcp", httpAddr)
	if err != nil {
		return err
	}
	first, err := grubcfg.FirstStageTFTP(grubcfg.FirstStage{HTTPAddr: httpAddr}, nil)
	if err != nil {
		return err
	}
	tftp := &tftpsrv.Server{Addr: netip.AddrPortFrom(ip, 69).String(), FS: os.DirFS(tftpRoot), Handler: first, Logger: log}
	tconn, err := tftp.Listen(ctx)
	if err != nil {
		return err
	}
	var dhcp *dhcpsrv.Server
	var dconns []net.PacketConn
	if iface != "" {
		from, to, _ := strings.Cut(pool, "-")
		dhcp = &dhcpsrv.Server{Interface: iface, ServerIP: ip, Logger: log,
			Subnets: []dhcpsrv.Subnet{{Prefix: netip.MustParsePrefix(prefix), Router: ip,
				Ranges: []dhcpsrv.Range{{From: netip.MustParseAddr(from), To: netip.MustParseAddr(to)}}}},
			Boot: dhcpsrv.BootPolicy{HTTPBase: "http://" + httpAddr},
			// Machines the inventory gives an "ip" keep it, read from the
			// current inventory on every request.
			Reservations: dhcpsrv.ReservationFunc(func(_ context.Context, mac hwaddr.MAC) (dhcpsrv.Reservation, bool, error) {
				h, ok := store.Inventory().Host(mac)
				return dhcpsrv.Reservation{IP: h.IP, Hostname: h.Hostname}, ok && h.IP.IsValid(), nil
			})}
		if dconns, err = dhcp.Listen(ctx); err != nil {
			return err
		}
		// A machine's config (SSH keys, secrets) only to its lease holder.
		ign.Guard = ignition.GuardFunc(func(ctx context.Context, mac hwaddr.MAC, remote netip.Addr) bool {
			l, ok, err := dhcp.Lease(ctx, mac)
			return err == nil && ok && l.IP == remote
		})
	}

	errc := make(chan error, 3)
	go func() { errc <- tftp.Serve(ctx, tconn) }()
	if dhcp != nil {
		go func() { errc <- dhcp.Serve(ctx, dconns...) }()
	}
	srv := &http.Server{Handler: mux}
	go func() { errc <- srv.Serve(grubcfg.Listener(ln)) }()
	log.Info("serving", "http", httpAddr, "tftp", tftp.Addr, "dhcp", iface)
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	_ = srv.Close()
	tconn.Close()
	for _, c := range dconns {
		c.Close()
	}
	return err
}
