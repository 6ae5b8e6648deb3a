// Command dnsbench serves a hosts file (the format dnsmasq's --addn-hosts
// reads: "address name...") with dnssrv, for internal/bench/dns.sh.
//
//	dnsbench -listen 127.0.0.1:5353 -hosts hosts.txt -zone lab. -reverse 172.22.0.0/16
//	dnsbench -freeport   # print a port free for UDP and TCP on 127.0.0.1
//
// It serves until SIGINT or SIGTERM, then prints the server's counters.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/metalboot/metalboot/dnssrv"
	"github.com/metalboot/metalboot/internal/bench/cpuprofile"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:5353", "UDP and TCP address")
	hosts := flag.String("hosts", "", "hosts file: address name...")
	zone := flag.String("zone", "lab.", "authoritative zone")
	reverse := flag.String("reverse", "172.22.0.0/16", "lab subnet for reverse zones")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile here")
	freeport := flag.Bool("freeport", false, "print a free UDP+TCP port on 127.0.0.1 and exit")
	flag.Parse()
	if err := run(*listen, *hosts, *zone, *reverse, *cpuprofile, *freeport); err != nil {
		fmt.Fprintln(os.Stderr, "dnsbench:", err)
		os.Exit(1)
	}
}

func run(listen, hosts, zone, reverse, profilePath string, freeport bool) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if freeport {
		pc, l, err := dnssrv.ListenUDPTCP(ctx, "127.0.0.1:0")
		if err != nil {
			return err
		}
		fmt.Println(pc.LocalAddr().(*net.UDPAddr).Port)
		pc.Close()
		l.Close()
		return nil
	}
	tab := new(dnssrv.Table)
	if hosts != "" {
		if err := load(tab, hosts); err != nil {
			return err
		}
	}
	p, err := netip.ParsePrefix(reverse)
	if err != nil {
		return err
	}
	srv := &dnssrv.Server{Addr: listen, Zones: []string{zone}, ReverseFor: []netip.Prefix{p}, Records: tab}
	stopProfile, err := cpuprofile.Start(profilePath)
	if err != nil {
		return err
	}
	defer stopProfile()
	err = srv.ListenAndServe(ctx)
	fmt.Fprintf(os.Stderr, "dnsbench: %d names; stats %+v\n", tab.Len(), srv.Stats())
	return err
}

func load(tab *dnssrv.Table, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	names := map[string][]netip.Addr{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		fields := strings.Fields(line)
		if len(fields) < 2 {
			continue
		}
		a, err := netip.ParseAddr(fields[0])
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		for _, n := range fields[1:] {
			names[n] = append(names[n], a)
		}
	}
	for n, as := range names {
		tab.Set(n, as...)
	}
	return sc.Err()
}
