package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/metalboot/metalboot/dhcpsrv"
	"github.com/metalboot/metalboot/dhcpsrv/hwaddr"
	"github.com/metalboot/metalboot/dnssrv"
	"github.com/metalboot/metalboot/grubcfg"
	"github.com/metalboot/metalboot/ignition"
	"github.com/metalboot/metalboot/profile"
	"github.com/metalboot/metalboot/profile/demo"
)

// lab is one running labserver: the packages wired together.
type lab struct {
	s        *settings
	log      *slog.Logger
	store    inventoryStore // data directory, or etcd (etcd.go)
	resolver *profile.Resolver
	timeline *timeline
	state    installStore // installed.json, or etcd (etcd.go)
	metrics  *metrics
	demo     bool

	dnsStatic dnssrv.Swap        // inventory hosts + config records, replaced on reload
	dnsLeases *dnssrv.LeaseNames // DHCP clients, expiring with their leases

	ignition *ignition.Handler

	dhcp atomic.Pointer[dhcpsrv.Server] // set once DHCP runs; read by HTTP handlers

	shared *shared // etcd (store section), nil: files only

	mu      sync.Mutex
	errc    chan error
	running int
	wg      sync.WaitGroup
	addrs   map[string]string // service → bound address, for the banner
}

func newLab(s *settings, log *slog.Logger) (*lab, error) {
	l := &lab{s: s, log: log, timeline: newTimeline(), metrics: newMetrics(),
		dnsLeases: &dnssrv.LeaseNames{Zone: s.Domain}, addrs: map[string]string{}}
	var data fs.FS
	if s.Data == "" {
		data, l.demo = demo.FS(), true
	} else {
		root, err := os.OpenRoot(s.Data)
		if err != nil {
			return nil, fmt.Errorf("data: %w", err)
		}
		data = root.FS()
	}
	l.ignition = l.newIgnitionHandler()
	if s.Store != nil {
		if err := l.openShared(); err != nil { // etcd.go
			return nil, err
		}
		defer l.sharedReady()
	}
	store, err := l.openInventory(data)
	if err != nil {
		where := s.Data
		if where == "" {
			where = "embedded demo inventory"
		}
		return nil, fmt.Errorf("data %s: %w", where, err)
	}
	l.store = store
	if l.state, err = l.openInstall(); err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	l.timeline.installed = l.state.isInstalled
	l.timeline.names = func() map[hwaddr.MAC]string {
		names := map[hwaddr.MAC]string{}
		for _, h := range l.store.Inventory().Hosts() {
			if h.Hostname != "" {
				names[h.MAC] = h.Hostname
			}
		}
		return names
	}
	l.resolver = &profile.Resolver{Store: store, BaseURL: s.BaseURL.String(), Facts: profile.FactSourceFunc(l.leaseFacts), Logger: log}
	l.ignition.Resolver = l.resolver
	l.refreshInventory()
	return l, nil
}

// refreshInventory feeds names and reservations from the current inventory
// to DNS (and, through reservation lookups, DHCP).
func (l *lab) refreshInventory() {
	t := &dnssrv.Table{}
	if l.demo {
		t.Set(demo.ServerName, demo.ServerIP)
	}
	for name, ip := range l.s.Records {
		t.Set(l.fqdn(name), ip)
	}
	hosts := l.store.Inventory().Hosts()
	for _, h := range hosts {
		if h.Hostname != "" && h.IP.IsValid() {
			t.Set(l.fqdn(h.Hostname), h.IP)
		}
	}
	if d := l.s.DHCP; d != nil {
		// A reservation's address is fixed: its name resolves before the
		// machine takes the lease, as an inventory host's does.
		for _, r := range d.Reservations {
			if r.Hostname != "" {
				ip, _ := netip.ParseAddr(r.IP)
				t.Set(l.fqdn(r.Hostname), ip)
			}
		}
		for _, w := range l.checkAgainstDHCP(hosts) {
			l.log.Warn("inventory and DHCP disagree", "problem", w)
		}
	}
	l.dnsStatic.Store(t)
}

// checkAgainstDHCP says, for each inventory host whose "ip" DHCP cannot
// honour, what will happen: the machine gets another address while DNS
// and the metadata name this one.
func (l *lab) checkAgainstDHCP(hosts []profile.Host) []string {
	d := l.s.DHCP
	if d == nil || d.Proxy {
		return nil
	}
	var out []string
	for _, h := range hosts {
		if !h.IP.IsValid() {
			continue
		}
		if r, ok := d.Reservations[h.MAC]; ok && r.IP != h.IP.String() {
			out = append(out, fmt.Sprintf("group %s: %s has ip %s, but dhcp.reservations gives it %s (the reservation wins; DNS names %s)",
				h.Group, h.MAC, h.IP, r.IP, h.IP))
			continue
		}
		if !d.Subnet.Contains(h.IP) {
			out = append(out, fmt.Sprintf("group %s: ip %s of %s is outside dhcp.subnet %s: not reserved, the machine gets an address from the range while DNS answers %s",
				h.Group, h.IP, h.MAC, d.Subnet, h.IP))
		}
	}
	return out
}

func (l *lab) fqdn(name string) string {
	name = strings.TrimSuffix(strings.ToLower(name), ".")
	if !strings.Contains(name, ".") {
		name += "." + l.s.Domain
	}
	return name + "."
}

// start binds every configured service; a bind error stops everything
// (fail fast: a lab with half its services is worse than none).
func (l *lab) start(ctx context.Context) error {
	l.errc = make(chan error, 8)
	type starter struct {
		name string
		fn   func(context.Context) error
	}
	starters := []starter{{"http", l.startHTTP}}
	if l.s.TFTP != "" {
		starters = append(starters, starter{"tftp", l.startTFTP})
	}
	if l.s.DNS != "" {
		starters = append(starters, starter{"dns", l.startDNS})
	}
	if l.s.DHCP != nil {
		starters = append(starters, starter{"dhcp", l.startDHCP})
	}
	// What to change when a service cannot start: the config key (and
	// flag) that chose its address.
	hint := map[string]string{
		"http": `set http (-http) to a free address`,
		"tftp": `set tftp (-tftp) to a free address, or "" to turn TFTP off`,
		"dns":  `set dns (-dns) to a free address, or "" to turn DNS off`,
		"dhcp": `check dhcp.interface, and that no other DHCP server listens on it`,
	}
	for _, st := range starters {
		if err := st.fn(ctx); err != nil {
			return fmt.Errorf("%s: %w (%s)", st.name, err, hint[st.name])
		}
	}
	return nil
}

// serve runs fn until ctx ends, reporting an early failure to wait.
func (l *lab) serve(name string, fn func() error) {
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		if err := fn(); err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			l.errc <- fmt.Errorf("%s: %w", name, err)
		}
	}()
}

func (l *lab) wait(ctx context.Context) error {
	var err error
	select {
	case <-ctx.Done():
	case err = <-l.errc:
	}
	done := make(chan struct{})
	go func() { l.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		l.log.Warn("some services did not stop within 10s")
	}
	return err
}

func (l *lab) setAddr(name, addr string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.addrs[name] = addr
}

func (l *lab) banner() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b strings.Builder
	inv := "data directory " + l.s.Data
	if l.demo {
		inv = "embedded demo inventory (mp.lab 00:23:32:2f:40:3c UEFI, smpc.lab 00:30:48:fb:e2:44 BIOS, arm.lab d8:3a:dd:48:2b:10 UEFI ARM64 by arch=arm64)"
	}
	if st := l.s.Store; st != nil { // etcd.go
		inv = fmt.Sprintf("inventory in etcd %s under %sinventory/; leases, install state and timeline shared there", strings.Join(st.Endpoints, ","), st.Prefix)
	}
	fmt.Fprintf(&b, "metalboot labserver: serving the %s\n", inv)
	fmt.Fprintf(&b, "  HTTP  http://%s  (/grub /boot.ipxe /ipxe /ignition /generic /metadata /assets/ /machines /metrics /healthz); machines are told %s\n", l.addrs["http"], l.s.BaseURL)
	if a := l.addrs["tftp"]; a != "" {
		files := "files from " + l.s.TFTPRoot
		if l.s.TFTPRoot == "" {
			files = "no GRUB images: set tftp_root (made by -make-tftp-root)"
		}
		fmt.Fprintf(&b, "  TFTP  %s  (first-stage grub.cfg generated; %s)\n", a, files)
	} else {
		fmt.Fprintf(&b, "  TFTP  off\n")
	}
	if a := l.addrs["dns"]; a != "" {
		fmt.Fprintf(&b, "  DNS   %s  (zone %s.)\n", a, l.s.Domain)
	} else {
		fmt.Fprintf(&b, "  DNS   off\n")
	}
	if l.s.DHCP != nil {
		mode := "addresses " + l.s.DHCP.Range[0].String() + "-" + l.s.DHCP.Range[1].String()
		if l.s.DHCP.Proxy {
			mode = "proxyDHCP: boot options only"
		}
		fmt.Fprintf(&b, "  DHCP  on %s, %s\n", l.s.DHCP.Interface, mode)
	} else {
		fmt.Fprintf(&b, "  DHCP  off\n")
	}
	// Try lines name a machine of the loaded inventory (the demo's or the
	// operator's), or none: never a name that would be NXDOMAIN here.
	var withMAC, withName *profile.Host
	hosts := l.store.Inventory().Hosts()
	for i := range hosts {
		h := &hosts[i]
		if withMAC == nil {
			withMAC = h
		}
		if withName == nil && h.Hostname != "" && h.IP.IsValid() {
			withName = h
		}
	}
	httpHost := l.addrs["http"]
	fmt.Fprintf(&b, "Try:\n")
	if withMAC != nil {
		fmt.Fprintf(&b, "  curl 'http://%s/grub?mac=%s'\n", httpHost, withMAC.MAC)
	} else {
		fmt.Fprintf(&b, "  curl 'http://%s/machines?format=json'\n", httpHost)
	}
	if a := l.addrs["tftp"]; a != "" {
		h, p, _ := net.SplitHostPort(a)
		fmt.Fprintf(&b, "  tftp %s %s -c get grub.cfg /dev/stdout\n", h, p)
	}
	if a := l.addrs["dns"]; a != "" && withName != nil {
		h, p, _ := net.SplitHostPort(a)
		fmt.Fprintf(&b, "  dig @%s -p %s %s +short\n", h, p, strings.TrimSuffix(l.fqdn(withName.Hostname), "."))
	}
	return b.String()
}

// askReinstall calls POST /machines/{mac}/reinstall on the running server.
func askReinstall(s *settings, mac string, out interface{ Write([]byte) (int, error) }) error {
	m, err := hwaddr.Parse(mac)
	if err != nil {
		return err
	}
	u := "http://" + s.HTTP + "/machines/" + m.String() + "/reinstall"
	req, err := http.NewRequest(http.MethodPost, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set(actionHeader, "reinstall")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("%s: %s: %s", u, resp.Status, strings.TrimSpace(string(b)))
	}
	fmt.Fprintf(out, "%s will be reinstalled on its next network boot\n", m)
	return nil
}

// makeTFTPRoot writes GRUB's network images for every installed platform
// (and those -grub-dir names: platformDirs) into dir, where DHCP's
// default boot files point, and the UEFI HTTP-boot images for the HTTP
// server at httpHost (base_url's host and port): grubcfg.MakeNetDir. It
// says what it made and skipped.
func makeTFTPRoot(dir, httpHost string, platformDirs map[string]string, out io.Writer) error {
	nd, err := grubcfg.MakeNetDir(context.Background(), dir, grubcfg.NetDirOptions{HTTPHost: httpHost, PlatformDirs: platformDirs})
	if err != nil {
		return err
	}
	for _, s := range nd.Skipped {
		fmt.Fprintf(out, "skip %s\n", s)
	}
	for _, p := range nd.Made {
		fmt.Fprintf(out, "%s: made\n", p)
	}
	for _, arch := range slices.Sorted(maps.Keys(nd.BootFiles)) {
		if !arch.HTTP() {
			fmt.Fprintf(out, "boot file for %s: %s\n", arch, filepath.Join(dir, filepath.FromSlash(nd.BootFiles[arch])))
		}
	}
	for _, p := range slices.Sorted(maps.Keys(nd.HTTPBootImages)) {
		fmt.Fprintf(out, "UEFI HTTP boot image (%s) for http://%s: %s\n", p, nd.HTTPHost, filepath.Join(dir, filepath.FromSlash(nd.HTTPBootImages[p])))
	}
	if err := installIPXE(dir, out); err != nil {
		return err
	}
	if err := installSecureBoot(dir, out); err != nil {
		return err
	}
	fmt.Fprintf(out, "serve it with: labserver -tftp-root %s (first-stage grub.cfg is generated)\n", dir)
	return nil
}

// metrics are labserver's Prometheus metrics.
type metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	stages   *prometheus.CounterVec
	errors   *prometheus.CounterVec
}

func newMetrics() *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "metalboot_http_requests_total", Help: "HTTP requests by handler and status code."}, []string{"handler", "code"})
	m.stages = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "metalboot_boot_stage_events_total", Help: "Boot-flow events by stage (dhcp-lease, tftp, grub, kernel, initrd, ignition, …)."}, []string{"stage"})
	m.errors = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "metalboot_errors_total", Help: "Errors by stage."}, []string{"stage"})
	m.reg.MustRegister(m.requests, m.stages, m.errors, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// event records a stage in the timeline and the metrics.
func (l *lab) event(mac hwaddr.MAC, ip netip.Addr, stage, detail string) {
	l.metrics.stages.WithLabelValues(stage).Inc()
	l.timeline.record(mac, ip, stage, detail)
}

// eventIP is event for a step known by the machine's address only (TFTP,
// files over HTTP): the timeline finds the machine by its lease.
func (l *lab) eventIP(ip netip.Addr, stage, detail string) {
	l.metrics.stages.WithLabelValues(stage).Inc()
	l.timeline.recordIP(ip, stage, detail)
}
