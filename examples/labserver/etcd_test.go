package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/metalboot/metalboot/internal/etcdtest"
)

func TestStoreConfigErrors(t *testing.T) {
	tests := []struct{ name, body, want string }{
		{"no endpoints", "store:\n  prefix: /lab/\n", "lab.yaml: store.endpoints: required"},
		{"bad endpoint", "store:\n  endpoints: [10.0.0.1:2379]\n", `store.endpoints: "10.0.0.1:2379": want http://host:port`},
		{"bad prefix", "store:\n  endpoints: [http://127.0.0.1:2379]\n  prefix: lab\n", "line 3: store.prefix:"},
		{"tls on http", "store:\n  endpoints: [http://127.0.0.1:2379]\n  ca: /etc/ssl/certs/ca-certificates.crt\n", "want https://"},
		{"cert without key", "store:\n  endpoints: [https://127.0.0.1:2379]\n  cert: /x.crt\n", "store.cert: cert and key go together"},
		{"missing ca", "store:\n  endpoints: [https://127.0.0.1:2379]\n  ca: /nonexistent/ca.pem\n", "store.ca:"},
		{"bad timeout", "store:\n  endpoints: [http://127.0.0.1:2379]\n  request_timeout: -1s\n", "line 3: store.request_timeout:"},
		{"unknown key", "store:\n  endpoint: [http://127.0.0.1:2379]\n", `unknown key "endpoint" under store`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run([]string{"-config", writeConfig(t, tc.body)}, &out, &errb)
			assert.Equal(t, exitConfig, code)
			assert.Contains(t, errb.String(), tc.want)
		})
	}
}

func TestStoreFlags(t *testing.T) {
	var out, errb bytes.Buffer
	// A flag alone makes a store section, which is then validated.
	assert.Equal(t, exitConfig, run([]string{"-store-prefix", "/lab/"}, &out, &errb))
	assert.Contains(t, errb.String(), "store.endpoints: required")
	errb.Reset()
	assert.Equal(t, exitConfig, run([]string{"-store-endpoints", "http://127.0.0.1:1,ftp://x"}, &out, &errb))
	assert.Contains(t, errb.String(), `"ftp://x"`)
}

// TestHealthzReportsEtcdLoss: a labserver on etcd answers /healthz 200;
// with two of three members killed it answers 503 naming etcd (and hands
// out no address: see dhcpsrv/etcdstore's tests); with them back, 200.
func TestHealthzReportsEtcdLoss(t *testing.T) {
	c := etcdtest.Start(t, 3)
	l, srv := testLab(t, func(cfg *Config) {
		cfg.Store = &StoreConfig{Endpoints: c.Endpoints(), Prefix: "/healthz-test/", RequestTimeout: "500ms"}
	})
	t.Cleanup(l.closeShared)
	code, body := get(t, srv.URL+"/healthz")
	require.Equal(t, 200, code, body)

	c.Kill(1)
	c.Kill(2)
	// The lease store notices when a request fails or its watch breaks;
	// a lab with no DHCP traffic learns it from the watch.
	deadline := time.Now().Add(time.Minute)
	for {
		code, body = get(t, srv.URL+"/healthz")
		if code == 503 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	require.Equal(t, 503, code)
	assert.True(t, strings.HasPrefix(body, "etcd: "), body)

	c.Restart(1)
	c.Restart(2)
	deadline = time.Now().Add(time.Minute)
	for {
		code, body = get(t, srv.URL+"/healthz")
		if code == 200 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	require.Equal(t, 200, code, body)
}
