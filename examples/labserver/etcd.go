package main

// Several labservers on one etcd (the lab.yaml "store:" section and the
// -store-* flags): DHCP leases and offer claims (dhcpsrv/etcdstore, under
// <prefix>dhcp/), install state and reinstall requests (<prefix>install/),
// the inventory (profile/etcdprofile, <prefix>inventory/, watched) and the
// provisioning timeline (<prefix>timeline/, etcd_timeline.go) are shared, so the servers serve one lab active-active. Without a store
// section nothing here runs: the file journal and installed.json under
// state: and the data directory are the stores, as for a one-machine lab.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/metalboot/metalboot/dhcpsrv/etcdstore"
	"github.com/metalboot/metalboot/dhcpsrv/hwaddr"
	"github.com/metalboot/metalboot/internal/etcdmirror"
	"github.com/metalboot/metalboot/profile"
	"github.com/metalboot/metalboot/profile/etcdprofile"
)

// inventoryStore is what the lab needs of its inventory: a data directory
// (profile.FSStore) or etcd (etcdprofile.Store).
type inventoryStore interface {
	Inventory() *profile.Inventory
	Reload() error
}

// installStore is what the lab needs of its install state: a file
// (installState) or etcd (etcdInstall).
type installStore interface {
	isInstalled(hwaddr.MAC) bool
	set(m hwaddr.MAC, installed bool, now time.Time) (bool, error)
}

// StoreConfig is the "store:" section: where the state shared by several
// labservers lives. Omitted: this labserver keeps its state in files
// (state:) and shares nothing.
type StoreConfig struct {
	// Endpoints are the etcd members' client URLs (http:// or https://).
	Endpoints []string `yaml:"endpoints"`
	// Prefix is prepended to every key (default /metalboot/); the
	// servers of one lab use the same prefix, and different labs on one
	// etcd different ones.
	Prefix string `yaml:"prefix"`
	// Cert and Key are a TLS client certificate and its key (both or
	// neither); CA verifies the members' certificates (default: the
	// system's roots). Any of them needs https:// endpoints.
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
	CA   string `yaml:"ca"`
	// DialTimeout bounds connecting to a member (default 5s);
	// RequestTimeout bounds each request (default 2s). A server that
	// gets no answer within it hands out no new address.
	DialTimeout    string `yaml:"dial_timeout"`
	RequestTimeout string `yaml:"request_timeout"`
}

// storeSettings are the validated store settings.
type storeSettings struct {
	Endpoints      []string
	Prefix         string
	TLS            *tls.Config
	DialTimeout    time.Duration
	RequestTimeout time.Duration
}

// resolveStore validates the store section (nil: none).
func (c *Config) resolveStore() (*storeSettings, error) {
	in := c.Store
	if in == nil {
		return nil, nil
	}
	st := &storeSettings{Prefix: in.Prefix, DialTimeout: 5 * time.Second, RequestTimeout: etcdstore.DefaultRequestTimeout}
	if st.Prefix == "" {
		st.Prefix = etcdstore.DefaultPrefix
	}
	if !strings.HasPrefix(st.Prefix, "/") || !strings.HasSuffix(st.Prefix, "/") {
		return nil, c.errorf("store.prefix", "%q: want a key prefix that starts and ends with /, like /metalboot/lab1/", in.Prefix)
	}
	if c.Data != "" {
		return nil, c.errorf("data", "%q: with a store the inventory lives in etcd: import the directory once with -import-data %s and leave data unset", c.Data, c.Data)
	}
	if len(in.Endpoints) == 0 {
		return nil, c.errorf("store.endpoints", "required: the etcd members' client URLs, like [https://10.0.0.11:2379]")
	}
	secure := in.Cert != "" || in.Key != "" || in.CA != ""
	for _, e := range in.Endpoints {
		u, err := url.Parse(e)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
			return nil, c.errorf("store.endpoints", "%q: want http://host:port or https://host:port", e)
		}
		if secure && u.Scheme != "https" {
			return nil, c.errorf("store.endpoints", "%q: cert, key or ca is set: want https://", e)
		}
		st.Endpoints = append(st.Endpoints, e)
	}
	for key, p := range map[string]*struct {
		in  string
		out *time.Duration
	}{"store.dial_timeout": {in.DialTimeout, &st.DialTimeout}, "store.request_timeout": {in.RequestTimeout, &st.RequestTimeout}} {
		if p.in == "" {
			continue
		}
		d, err := time.ParseDuration(p.in)
		if err != nil || d <= 0 {
			return nil, c.errorf(key, "%q: want a positive duration, like 2s", p.in)
		}
		*p.out = d
	}
	if (in.Cert == "") != (in.Key == "") {
		return nil, c.errorf("store.cert", "cert and key go together: give both or neither")
	}
	if secure {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12}
		if in.Cert != "" {
			pair, err := tls.LoadX509KeyPair(in.Cert, in.Key)
			if err != nil {
				return nil, c.errorf("store.cert", "%v", err)
			}
			cfg.Certificates = []tls.Certificate{pair}
		}
		if in.CA != "" {
			pem, err := os.ReadFile(in.CA)
			if err != nil {
				return nil, c.errorf("store.ca", "%v", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, c.errorf("store.ca", "%s: no PEM certificate in it", in.CA)
			}
			cfg.RootCAs = pool
		}
		st.TLS = cfg
	}
	return st, nil
}

// storeFlags are the -store-* flags; they override the store section.
type storeFlags struct {
	endpoints, prefix, cert, key, ca, dial, request *string
	importDir, exportDir                            *string
}

func addStoreFlags(fl *flag.FlagSet) *storeFlags {
	return &storeFlags{
		endpoints: fl.String("store-endpoints", "", "etcd client URLs, comma-separated: share leases and offers with other labservers (default: files under -state, nothing shared)"),
		prefix:    fl.String("store-prefix", "", "etcd key prefix of this lab (default /metalboot/)"),
		cert:      fl.String("store-cert", "", "TLS client certificate for etcd"),
		key:       fl.String("store-key", "", "key of -store-cert"),
		ca:        fl.String("store-ca", "", "CA that signed the etcd members' certificates"),
		dial:      fl.String("store-dial-timeout", "", "etcd connect timeout (default 5s)"),
		request:   fl.String("store-request-timeout", "", "etcd request timeout (default 2s)"),
		importDir: fl.String("import-data", "", "copy this matchbox data directory into the store's inventory (replacing it, after checking it loads), then exit"),
		exportDir: fl.String("export-data", "", "write the store's inventory into this new directory as a matchbox data directory, then exit"),
	}
}

// apply copies the flags that were set into cfg.Store.
func (f *storeFlags) apply(cfg *Config, set map[string]bool) {
	fields := []struct {
		name string
		val  *string
		dst  func(*StoreConfig) *string
	}{
		{"store-prefix", f.prefix, func(s *StoreConfig) *string { return &s.Prefix }},
		{"store-cert", f.cert, func(s *StoreConfig) *string { return &s.Cert }},
		{"store-key", f.key, func(s *StoreConfig) *string { return &s.Key }},
		{"store-ca", f.ca, func(s *StoreConfig) *string { return &s.CA }},
		{"store-dial-timeout", f.dial, func(s *StoreConfig) *string { return &s.DialTimeout }},
		{"store-request-timeout", f.request, func(s *StoreConfig) *string { return &s.RequestTimeout }},
	}
	any := set["store-endpoints"]
	for _, x := range fields {
		any = any || set[x.name]
	}
	if !any {
		return
	}
	if cfg.Store == nil {
		cfg.Store = &StoreConfig{}
	}
	if set["store-endpoints"] {
		cfg.Store.Endpoints = nil
		for _, e := range strings.Split(*f.endpoints, ",") {
			if e = strings.TrimSpace(e); e != "" {
				cfg.Store.Endpoints = append(cfg.Store.Endpoints, e)
			}
		}
	}
	for _, x := range fields {
		if set[x.name] {
			*x.dst(cfg.Store) = *x.val
		}
	}
}

// command runs -import-data or -export-data; done reports whether one
// was given (then labserver exits with code).
func (f *storeFlags) command(s *settings, stdout, stderr io.Writer) (done bool, code int) {
	if *f.importDir == "" && *f.exportDir == "" {
		return false, exitOK
	}
	fail := func(err error) (bool, int) {
		fmt.Fprintf(stderr, "labserver: %v\n", err)
		return true, exitFail
	}
	if s.Store == nil {
		fmt.Fprintln(stderr, "labserver: -import-data and -export-data need a store (store: section or -store-endpoints)")
		return true, exitConfig
	}
	cli, err := dialStore(s.Store)
	if err != nil {
		return fail(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), s.Store.DialTimeout+10*s.Store.RequestTimeout)
	defer cancel()
	prefix := s.Store.Prefix + "inventory/"
	if dir := *f.importDir; dir != "" {
		root, err := os.OpenRoot(dir)
		if err != nil {
			return fail(fmt.Errorf("import-data: %w", err))
		}
		defer root.Close()
		// The same checks a serving labserver makes (templates compile,
		// boot_loader metadata): what is imported will load everywhere.
		probe := &lab{s: s, log: slog.New(slog.DiscardHandler)}
		probe.ignition = probe.newIgnitionHandler()
		n, err := etcdprofile.Import(ctx, cli, prefix, root.FS(), probe.checkInventory)
		if err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "imported %d files from %s into %s\n", n, dir, prefix)
	}
	if dir := *f.exportDir; dir != "" {
		n, err := etcdprofile.Export(ctx, cli, prefix, dir)
		if err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "exported %d files from %s into %s\n", n, prefix, dir)
	}
	return true, exitOK
}

func dialStore(st *storeSettings) (*clientv3.Client, error) {
	cli, err := clientv3.New(clientv3.Config{
		Endpoints: st.Endpoints, TLS: st.TLS, DialTimeout: st.DialTimeout,
		Logger: zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("store: etcd %v: %w", st.Endpoints, err)
	}
	return cli, nil
}

// shared is the etcd side of a lab: the client, the lease store, install
// state and the inventory.
type shared struct {
	cli       *clientv3.Client
	leases    *etcdstore.Store
	install   *etcdInstall
	inventory *etcdprofile.Store
	timeline  *sharedTimeline
	ready     chan struct{} // closed once the lab is built: inventory callbacks wait for it
	readyOnce sync.Once

	mu      sync.Mutex
	lastErr string
	stop    chan struct{}
	done    chan struct{}
}

// openShared connects to etcd and loads the leases, the install state and
// the inventory: an etcd that does not answer stops the start (a new
// server never guesses what is leased or installed), and so does an
// inventory in etcd that does not load (import a good one with
// -import-data).
func (l *lab) openShared() (err error) {
	st := l.s.Store
	cli, err := dialStore(st)
	if err != nil {
		return err
	}
	sh := &shared{cli: cli, ready: make(chan struct{}), stop: make(chan struct{}), done: make(chan struct{})}
	defer func() {
		if err != nil {
			sh.closeStores()
			cli.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), st.DialTimeout+st.RequestTimeout)
	defer cancel()
	where := fmt.Sprintf("store: etcd %v", st.Endpoints)
	log := l.log.With("component", "etcd")
	if sh.leases, err = etcdstore.Open(ctx, cli, etcdstore.Options{Prefix: st.Prefix, RequestTimeout: st.RequestTimeout, Logger: log}); err != nil {
		return fmt.Errorf("%s: leases: %w", where, err)
	}
	m, err := etcdmirror.Open(ctx, cli, st.Prefix+"install/", st.RequestTimeout, nil, log)
	if err != nil {
		return fmt.Errorf("%s: install state: %w", where, err)
	}
	sh.install = &etcdInstall{cli: cli, m: m, prefix: st.Prefix + "install/", timeout: st.RequestTimeout}
	sh.inventory, err = etcdprofile.Open(ctx, cli, etcdprofile.Options{
		Prefix: st.Prefix + "inventory/", Check: l.checkInventory, RequestTimeout: st.RequestTimeout,
		Logger: l.log.With("component", "inventory"),
		OnReload: func(_ *profile.Inventory, err error) {
			<-sh.ready
			if err != nil {
				l.log.Error("inventory change in etcd rejected; still serving the previous one", "err", err)
				return
			}
			l.refreshInventory()
			l.log.Info("inventory changed in etcd; serving it")
		},
	})
	if err != nil {
		return fmt.Errorf("%s: inventory (import one with -import-data DIR): %w", where, err)
	}
	if sh.timeline, err = startSharedTimeline(ctx, cli, st.Prefix+"timeline/", st.RequestTimeout, l.timeline, log); err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	l.shared = sh
	go l.watchHealth(sh)
	return nil
}

// sharedReady lets the inventory watch call back into the lab, once it is
// built.
func (l *lab) sharedReady() {
	if l.shared != nil {
		l.shared.readyOnce.Do(func() { close(l.shared.ready) })
	}
}

func (sh *shared) closeStores() error {
	var errs []error
	if sh.timeline != nil {
		sh.timeline.stop()
	}
	if sh.inventory != nil {
		sh.readyOnce.Do(func() { close(sh.ready) }) // a pending callback may run: the lab is built or abandoned
		errs = append(errs, sh.inventory.Close())
	}
	if sh.install != nil {
		sh.install.m.Close()
	}
	if sh.leases != nil {
		errs = append(errs, sh.leases.Close())
	}
	return errors.Join(errs...)
}

// etcdInstall is the install state in etcd: one key per installed
// machine, <prefix><mac> = the time it was marked installed; a reinstall
// request deletes it. Reads come from a watched mirror.
type etcdInstall struct {
	cli     *clientv3.Client
	m       *etcdmirror.Mirror
	prefix  string
	timeout time.Duration
}

func (e *etcdInstall) isInstalled(mac hwaddr.MAC) bool {
	_, ok := e.m.Get(mac.String())
	return ok
}

// set writes the change to etcd (a quorum has it when it returns nil).
func (e *etcdInstall) set(mac hwaddr.MAC, installed bool, now time.Time) (bool, error) {
	was := e.isInstalled(mac)
	ctx, cancel := context.WithTimeout(context.Background(), e.timeout)
	defer cancel()
	key := mac.String()
	if installed {
		if was {
			return false, nil
		}
		v := now.UTC().Format(time.RFC3339Nano)
		resp, err := e.cli.Put(ctx, e.prefix+key, v)
		if err != nil {
			return false, fmt.Errorf("etcd: %w", err)
		}
		e.m.Apply(key, []byte(v), resp.Header.Revision)
		return true, nil
	}
	resp, err := e.cli.Delete(ctx, e.prefix+key)
	if err != nil {
		return false, fmt.Errorf("etcd: %w", err)
	}
	e.m.Apply(key, nil, resp.Header.Revision)
	return resp.Deleted > 0, nil
}

// watchHealth logs when the lab loses etcd and when it gets it back.
func (l *lab) watchHealth(sh *shared) {
	defer close(sh.done)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-sh.stop:
			return
		case <-t.C:
		}
		msg := ""
		if err := l.storeHealth(); err != nil {
			msg = err.Error()
		}
		sh.mu.Lock()
		changed := msg != sh.lastErr
		sh.lastErr = msg
		sh.mu.Unlock()
		switch {
		case changed && msg != "":
			l.log.Error("ETCD UNAVAILABLE: handing out no new addresses until it is back; /healthz says 503", "err", msg)
		case changed:
			l.log.Info("etcd available again: DHCP hands out addresses")
		}
	}
}

// storeHealth is nil unless the lab shares its state through etcd and has
// lost it.
func (l *lab) storeHealth() error {
	if l.shared == nil {
		return nil
	}
	sh := l.shared
	if err := errors.Join(sh.leases.Err(), sh.install.m.Err(), sh.inventory.WatchErr()); err != nil {
		return fmt.Errorf("etcd: %w", err)
	}
	return nil
}

// closeShared stops the health watch and the lease store and closes the
// etcd client.
func (l *lab) closeShared() {
	sh := l.shared
	if sh == nil {
		return
	}
	close(sh.stop)
	<-sh.done
	err := errors.Join(sh.closeStores(), sh.cli.Close())
	if err != nil {
		l.log.Warn("store: closing etcd", "err", err)
	}
}

// openInventory returns the inventory: etcd's when the lab shares a store,
// else the data directory data (the embedded demo when none).
func (l *lab) openInventory(data fs.FS) (inventoryStore, error) {
	if l.shared != nil {
		l.demo = false
		return l.shared.inventory, nil
	}
	return profile.OpenFS(data, l.checkInventory, l.log.With("component", "inventory"))
}

// openInstall returns the install state: etcd's when the lab shares a
// store, else installed.json under state (memory when none).
func (l *lab) openInstall() (installStore, error) {
	if l.shared != nil {
		return l.shared.install, nil
	}
	return openInstallState(l.s.State, l.s.DiscardCorruptState, l.log)
}
