package main

// Several labservers on one etcd (the lab.yaml "store:" section and the
// -store-* flags): DHCP leases and offer claims are shared through
// dhcpsrv/etcdstore, so the servers serve one pool active-active. Without
// a store section nothing here runs and the file journal under state: is
// the store, as for a one-machine lab.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/metalboot/metalboot/dhcpsrv/etcdstore"
)

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

// shared is the etcd side of a lab: the client and the lease store.
type shared struct {
	cli    *clientv3.Client
	leases *etcdstore.Store

	mu      sync.Mutex
	lastErr string
	stop    chan struct{}
	done    chan struct{}
}

// openShared connects to etcd and loads the leases: an etcd that does not
// answer stops the start (a new server never guesses what is leased).
func (l *lab) openShared() error {
	st := l.s.Store
	cli, err := clientv3.New(clientv3.Config{
		Endpoints: st.Endpoints, TLS: st.TLS, DialTimeout: st.DialTimeout,
		Logger: zap.NewNop(),
	})
	if err != nil {
		return fmt.Errorf("store: etcd %v: %w", st.Endpoints, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), st.DialTimeout+st.RequestTimeout)
	defer cancel()
	leases, err := etcdstore.Open(ctx, cli, etcdstore.Options{Prefix: st.Prefix, RequestTimeout: st.RequestTimeout,
		Logger: l.log.With("component", "etcd")})
	if err != nil {
		cli.Close()
		return fmt.Errorf("store: etcd %v: %w", st.Endpoints, err)
	}
	sh := &shared{cli: cli, leases: leases, stop: make(chan struct{}), done: make(chan struct{})}
	l.shared = sh
	go l.watchHealth(sh)
	return nil
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
		if err := sh.leases.Err(); err != nil {
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
	if err := l.shared.leases.Err(); err != nil {
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
	err := errors.Join(sh.leases.Close(), sh.cli.Close())
	if err != nil {
		l.log.Warn("store: closing etcd", "err", err)
	}
}
