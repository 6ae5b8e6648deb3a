// Command tftpd serves a directory with tftpsrv; it is used by the benchmark
// script internal/bench/tftp.sh and for manual interop checks.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	_ "net/http/pprof"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/metalboot/metalboot/tftpsrv"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:6969", "UDP address to listen on")
	dir := flag.String("dir", ".", "directory to serve")
	ahead := flag.Int("send-ahead", 0, "blocks in flight to clients that do not negotiate windowsize (0 = default 8, 1 = lockstep)")
	maxWindow := flag.Int("max-window", 0, "largest RFC 7440 windowsize granted (0 = default 64, -1 = refuse the option)")
	single := flag.Bool("single-port", false, "answer every transfer from the listening port")
	timeout := flag.Duration("timeout", time.Second, "retransmission timeout")
	// The benchmark's boot storm runs every client from 127.0.0.1, like
	// machines behind one NAT address: no per-client limit unless asked.
	perClient := flag.Int("max-per-client", -1, "transfers in progress per client address (0 = the package default, -1 = no limit)")
	pprofAddr := flag.String("pprof", "", "serve net/http/pprof on this TCP address (e.g. 127.0.0.1:6060)")
	verbose := flag.Bool("v", false, "log every transfer")
	flag.Parse()

	fsys, err := tftpsrv.DirFS(*dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelDebug
	}
	srv := &tftpsrv.Server{
		Addr:       *addr,
		FS:         fsys,
		Logger:     slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})),
		SendAhead:  *ahead,
		MaxWindow:  *maxWindow,
		SinglePort: *single,
		Timeout:    *timeout,

		MaxTransfersPerClient: *perClient,
	}
	if *pprofAddr != "" {
		ln, err := net.Listen("tcp", *pprofAddr)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		go http.Serve(ln, nil)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := srv.ListenAndServe(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	st := srv.Stats()
	fmt.Fprintf(os.Stderr, "tftpd: requests=%d completed=%d failed=%d aborted=%d refused=%d notfound=%d malformed=%d bytes=%d\n",
		st.Requests, st.Completed, st.Failed, st.Aborted, st.Refused, st.NotFound, st.Malformed, st.BytesSent)
}
