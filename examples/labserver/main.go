// Command labserver serves a whole network-boot lab from one process: DHCP
// (optional), TFTP, HTTP (/grub, /ignition, /assets, /machines, /metrics)
// and DNS, wired from the metalboot packages.
//
// With no arguments it serves the embedded demo inventory on loopback:
//
//	go run ./examples/labserver
//
// For a real lab, write a config file (see lab.yaml) and run
//
//	labserver -config /etc/metalboot/lab.yaml
//
// Flags override the file. SIGHUP reloads the inventory (a broken one is
// rejected and the old one stays); SIGINT and SIGTERM shut down gracefully.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// exit codes
const (
	exitOK     = 0
	exitFail   = 1
	exitConfig = 2
)

func run(args []string, stdout, stderr io.Writer) int {
	fl := flag.NewFlagSet("labserver", flag.ContinueOnError)
	fl.SetOutput(stderr)
	var (
		configFile = fl.String("config", "", "YAML config file for a real lab (see examples/labserver/lab.yaml)")
		httpAddr   = fl.String("http", "", "HTTP listen address (default 127.0.0.1:8080)")
		tftpAddr   = fl.String("tftp", "", "TFTP listen address, empty disables (default 127.0.0.1:6969)")
		dnsAddr    = fl.String("dns", "", "DNS listen address, empty disables (default 127.0.0.1:5353)")
		dataDir    = fl.String("data", "", "matchbox-compatible data directory (default: the embedded demo inventory)")
		assetsDir  = fl.String("assets", "", "directory served at /assets/")
		tftpRoot   = fl.String("tftp-root", "", "directory served over TFTP (made by -make-tftp-root)")
		baseURL    = fl.String("base-url", "", "URL machines reach this server at (default http://<http address>)")
		stateDir   = fl.String("state", "", "directory for leases and install state (default: in memory)")
		makeRoot   = fl.String("make-tftp-root", "", "write GRUB network images for BIOS, UEFI x86-64 and UEFI ARM64 (each whose modules are there) into DIR with grub-mknetdir, then exit")
		reinstall  = fl.String("reinstall", "", "ask the running server (at -http) to reinstall the machine with this MAC, then exit")
		logLevel   = fl.String("log-level", "", "debug, info, warn or error (default info)")
		discard    = fl.Bool("discard-corrupt-state", false, "a state file (leases, install state) that does not read back: move it aside (renamed *.corrupt-<time>) and start empty, instead of refusing to start")
	)
	gdirs := grubDirs{}
	fl.Var(gdirs, "grub-dir", "with -make-tftp-root: PLATFORM=DIR, GRUB modules of a platform not under /usr/lib/grub, e.g. arm64-efi=<dpkg -x of grub-efi-arm64-bin:arm64>/usr/lib/grub/arm64-efi (repeatable)")
	storeFl := addStoreFlags(fl)
	if err := fl.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitConfig
	}
	if fl.NArg() > 0 {
		fmt.Fprintf(stderr, "labserver: unexpected argument %q\n", fl.Arg(0))
		return exitConfig
	}
	set := map[string]bool{}
	fl.Visit(func(f *flag.Flag) { set[f.Name] = true })

	cfg := &Config{}
	if *configFile != "" {
		c, err := loadConfig(*configFile)
		if err != nil {
			fmt.Fprintf(stderr, "labserver: %v\n", err)
			return exitConfig
		}
		cfg = c
	}
	// Flags override the file.
	if set["http"] {
		cfg.HTTP = httpAddr
	}
	if set["tftp"] {
		cfg.TFTP = tftpAddr
	}
	if set["dns"] {
		cfg.DNS = dnsAddr
	}
	for name, p := range map[string][2]*string{"data": {&cfg.Data, dataDir}, "assets": {&cfg.Assets, assetsDir},
		"tftp-root": {&cfg.TFTPRoot, tftpRoot}, "base-url": {&cfg.BaseURL, baseURL}, "state": {&cfg.State, stateDir},
		"log-level": {&cfg.LogLevel, logLevel}} {
		if set[name] {
			*p[0] = *p[1]
		}
	}
	storeFl.apply(cfg, set)
	s, err := cfg.resolve()
	if err != nil {
		fmt.Fprintf(stderr, "labserver: %v\n", err)
		return exitConfig
	}
	s.DiscardCorruptState = *discard
	if done, code := storeFl.command(s, stdout, stderr); done { // etcd.go: -import-data, -export-data
		return code
	}
	if *makeRoot != "" {
		if err := makeTFTPRoot(*makeRoot, s.BaseURL.Host, gdirs, stdout); err != nil {
			fmt.Fprintf(stderr, "labserver: %v\n", err)
			return exitFail
		}
		if s.baseDerived {
			fmt.Fprintf(stderr, "labserver: note: the UEFI HTTP-boot image reads from %s, derived from the HTTP listen address; "+
				"give base_url (or -base-url) with the address machines reach and run -make-tftp-root again\n", s.BaseURL)
		}
		return exitOK
	}
	if *reinstall != "" {
		if err := askReinstall(s, *reinstall, stdout); err != nil {
			fmt.Fprintf(stderr, "labserver: %v\n", err)
			return exitFail
		}
		return exitOK
	}
	level := slog.LevelInfo
	if cfg.LogLevel != "" {
		if err := level.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
			fmt.Fprintf(stderr, "labserver: log-level %q: want debug, info, warn or error\n", cfg.LogLevel)
			return exitConfig
		}
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	lab, err := newLab(s, log)
	if err != nil {
		fmt.Fprintf(stderr, "labserver: %v\n", err)
		return exitConfig
	}
	defer lab.closeShared()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				if err := lab.store.Reload(); err != nil {
					log.Error("SIGHUP: inventory rejected; still serving the previous one", "err", err)
				} else {
					lab.refreshInventory()
					log.Info("SIGHUP: inventory reloaded")
				}
			}
		}
	}()
	if err := lab.start(ctx); err != nil {
		fmt.Fprintf(stderr, "labserver: %v\n", err)
		return exitFail
	}
	fmt.Fprint(stdout, lab.banner())
	err = lab.wait(ctx)
	if err != nil && !errors.Is(err, context.Canceled) {
		log.Error("server stopped", "err", err)
		return exitFail
	}
	log.Info("shut down")
	return exitOK
}
