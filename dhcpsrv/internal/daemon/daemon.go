// Package daemon runs a dhcpsrv.Server from command-line flags. It backs
// the dhcpsrvd command (benchmarks) and the crash tests, which re-execute
// the test binary as a server process.
package daemon

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/metalboot/metalboot/dhcpsrv"
	"github.com/metalboot/metalboot/internal/bench/cpuprofile"
)

// Main parses args (without the program name), serves until SIGINT/SIGTERM
// and returns. It prints "ready" to stdout once listening and, with
// -print-acks, one line "ACK <mac> <ip>" per lease after it is durably
// stored and before the ACK is sent.
func Main(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("dhcpsrvd", flag.ContinueOnError)
	iface := fs.String("i", "", "interface to serve (SO_BINDTODEVICE)")
	serverIP := fs.String("server-ip", "", "server address (default: the interface's)")
	var subnets multi
	fs.Var(&subnets, "subnet", "PREFIX,FROM,TO[,ROUTER] (repeatable)")
	leases := fs.String("leases", "", "lease journal directory (empty: memory)")
	leaseTime := fs.Duration("lease-time", time.Hour, "lease time")
	syncInterval := fs.Duration("sync-interval", 0, "journal: fsync within this interval instead of before every ACK (0: before every ACK)")
	printAcks := fs.Bool("print-acks", false, "print ACK lines")
	proxy := fs.Bool("proxy", false, "proxyDHCP mode")
	verbose := fs.Bool("v", false, "debug log on stderr")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile to this file until exit")
	if err := fs.Parse(args); err != nil {
		return err
	}
	stopProfile, err := cpuprofile.Start(*cpuProfile)
	if err != nil {
		return err
	}
	defer stopProfile()
	s := &dhcpsrv.Server{Interface: *iface, ProxyDHCP: *proxy}
	if *verbose {
		s.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if *serverIP != "" {
		ip, err := netip.ParseAddr(*serverIP)
		if err != nil {
			return fmt.Errorf("-server-ip: %w", err)
		}
		s.ServerIP = ip
	}
	for _, sn := range subnets {
		f := strings.Split(sn, ",")
		if len(f) < 3 {
			return fmt.Errorf("-subnet %q: want PREFIX,FROM,TO[,ROUTER]", sn)
		}
		p, err1 := netip.ParsePrefix(f[0])
		from, err2 := netip.ParseAddr(f[1])
		to, err3 := netip.ParseAddr(f[2])
		if err := errors.Join(err1, err2, err3); err != nil {
			return fmt.Errorf("-subnet %q: %w", sn, err)
		}
		x := dhcpsrv.Subnet{Prefix: p, Ranges: []dhcpsrv.Range{{From: from, To: to}}, LeaseTime: *leaseTime}
		if len(f) > 3 {
			if x.Router, err1 = netip.ParseAddr(f[3]); err1 != nil {
				return fmt.Errorf("-subnet %q: %w", sn, err1)
			}
		}
		s.Subnets = append(s.Subnets, x)
	}
	if *leases != "" {
		j, err := dhcpsrv.OpenJournalOptions(*leases, dhcpsrv.JournalOptions{SyncInterval: *syncInterval})
		if err != nil {
			return err
		}
		defer j.Close()
		s.Leases = j
	}
	var outMu sync.Mutex
	if *printAcks {
		s.OnLease = func(l dhcpsrv.Lease) {
			outMu.Lock()
			fmt.Fprintf(stdout, "ACK %s %s\n", l.MAC, l.IP)
			outMu.Unlock()
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	conn, err := dhcpsrv.ListenUDP(ctx, *iface, dhcpsrv.ServerPort)
	if err != nil {
		return err
	}
	defer conn.Close()
	fmt.Fprintln(stdout, "ready")
	err = s.Serve(ctx, conn)
	st := s.Stats()
	fmt.Fprintf(os.Stderr, "dhcpsrvd: %+v\n", st)
	return err
}

type multi []string

func (m *multi) String() string     { return strings.Join(*m, " ") }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }
