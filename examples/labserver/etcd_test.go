package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/metalboot/metalboot/internal/etcdtest"
	"github.com/metalboot/metalboot/profile/demo"
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

// TestTwoLabsShareOneStore: two labservers on one etcd (3 members) serve
// the same inventory, imported from a matchbox data directory with
// -import-data; a machine marked installed through A boots its disk when
// it asks B; an inventory change made in etcd is served by both without
// a restart, a broken one is rejected by both while the last good one
// keeps serving; -export-data writes the inventory back out.
func TestTwoLabsShareOneStore(t *testing.T) {
	c := etcdtest.Start(t, 3)
	eps := strings.Join(c.Endpoints(), ",")
	const prefix = "/lab/"
	data := t.TempDir()
	require.NoError(t, os.CopyFS(data, demo.FS()))

	var out, errb bytes.Buffer
	require.Equal(t, exitOK, run([]string{"-store-endpoints", eps, "-store-prefix", prefix, "-import-data", data}, &out, &errb), errb.String())
	assert.Contains(t, out.String(), fmt.Sprintf("imported %d files", countFiles(t, data)))

	store := func(cfg *Config) { cfg.Store = &StoreConfig{Endpoints: c.Endpoints(), Prefix: prefix} }
	a, srvA := testLab(t, store)
	t.Cleanup(a.closeShared)
	b, srvB := testLab(t, store)
	t.Cleanup(b.closeShared)
	assert.Contains(t, b.banner(), "inventory in etcd "+c.Endpoints()[0])

	const mac = "00:30:48:fb:e2:44"
	_, bodyA := get(t, srvA.URL+"/grub?mac="+mac)
	_, bodyB := get(t, srvB.URL+"/grub?mac="+mac)
	require.Contains(t, bodyB, "linux ")
	assert.Equal(t, strings.ReplaceAll(bodyA, srvA.URL, ""), strings.ReplaceAll(bodyB, srvB.URL, ""))

	// Installed through A: B boots it from disk. Reinstall through B: A
	// installs it again.
	code, body := post(t, srvA.URL+"/machines/"+mac+"/installed", "installed", nil)
	require.Equal(t, 200, code, body)
	eventuallyBody(t, srvB.URL+"/grub?mac="+mac, func(body string) bool { return !strings.Contains(body, "linux ") })
	code, body = post(t, srvB.URL+"/machines/"+mac+"/reinstall", "reinstall", nil)
	require.Equal(t, 200, code, body)
	eventuallyBody(t, srvA.URL+"/grub?mac="+mac, func(body string) bool { return strings.Contains(body, "linux ") })

	// The timeline: each server shows the steps the other recorded.
	eventuallyBody(t, srvB.URL+"/machines?format=json", func(body string) bool {
		return strings.Contains(body, `"stage": "installed"`) && strings.Contains(body, `"stage": "reinstall-requested"`)
	})
	eventuallyBody(t, srvA.URL+"/machines?format=json", func(body string) bool {
		return strings.Contains(body, `"stage": "reinstall-requested"`)
	})
	// Bounded per machine in etcd: many events leave the newest maxEvents.
	busy := mustMAC("52:54:00:00:00:42")
	for i := range 3 * maxEvents {
		a.event(busy, netip.Addr{}, stageGrub, fmt.Sprintf("step %d", i))
	}
	cliT := c.Client(t)
	deadline := time.Now().Add(30 * time.Second)
	var n int64
	for time.Now().Before(deadline) {
		r, err := cliT.Get(context.Background(), prefix+"timeline/"+busy.String()+"/", clientv3.WithPrefix(), clientv3.WithCountOnly())
		require.NoError(t, err)
		if n = r.Count; n == maxEvents {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	assert.EqualValues(t, maxEvents, n, "events of one machine kept in etcd")
	eventuallyBody(t, srvB.URL+"/machines?format=json", func(body string) bool {
		return strings.Contains(body, fmt.Sprintf(`"step %d"`, 3*maxEvents-1))
	})
	var ms []machineRecord
	_, body = get(t, srvB.URL+"/machines?format=json")
	require.NoError(t, json.Unmarshal([]byte(body), &ms))
	for _, m := range ms {
		if m.MAC == busy.String() {
			assert.Len(t, m.Events, maxEvents)
		}
	}

	// An inventory change in etcd reaches both servers.
	cli := c.Client(t)
	ctx := context.Background()
	prof, err := os.ReadFile(filepath.Join(data, "profiles", "install.json"))
	require.NoError(t, err)
	changed := strings.Replace(string(prof), `"console=tty0",`, `"console=tty0", "changed.in.etcd=1",`, 1)
	require.NotEqual(t, string(prof), changed)
	put := time.Now()
	_, err = cli.Put(ctx, prefix+"inventory/profiles/install.json", changed)
	require.NoError(t, err)
	for _, u := range []string{srvA.URL, srvB.URL} {
		eventuallyBody(t, u+"/grub?mac="+mac, func(body string) bool { return strings.Contains(body, "changed.in.etcd=1") })
	}
	t.Logf("inventory change served by both servers %v after the write", time.Since(put))

	// A broken change (a group naming a missing profile) is rejected by
	// both; the last good inventory keeps serving.
	_, err = cli.Put(ctx, prefix+"inventory/groups/broken.json", `{"id":"broken","profile":"nonexistent","selector":{"mac":"52:54:00:99:99:99"}}`)
	require.NoError(t, err)
	for _, l := range []*lab{a, b} {
		inv := l.shared.inventory
		deadline := time.Now().Add(30 * time.Second)
		for inv.Err() == nil && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		require.Error(t, inv.Err())
		assert.Contains(t, inv.Err().Error(), "nonexistent")
	}
	_, body = get(t, srvB.URL+"/grub?mac="+mac)
	assert.Contains(t, body, "changed.in.etcd=1", "the last good inventory serves")
	code, _ = get(t, srvB.URL+"/healthz")
	assert.Equal(t, 200, code, "a rejected inventory is no loss of etcd")
	_, err = cli.Delete(ctx, prefix+"inventory/groups/broken.json")
	require.NoError(t, err)

	// Export writes back what etcd holds.
	exp := filepath.Join(t.TempDir(), "export")
	out.Reset()
	require.Equal(t, exitOK, run([]string{"-store-endpoints", eps, "-store-prefix", prefix, "-export-data", exp}, &out, &errb), errb.String())
	got, err := os.ReadFile(filepath.Join(exp, "profiles", "install.json"))
	require.NoError(t, err)
	assert.Equal(t, changed, string(got))
	for _, f := range []string{"groups/smpc.json", "ignition/install.yaml.tmpl"} {
		want, err := os.ReadFile(filepath.Join(data, f))
		require.NoError(t, err)
		got, err := os.ReadFile(filepath.Join(exp, f))
		require.NoError(t, err)
		assert.Equal(t, string(want), string(got), f)
	}
	// A broken data directory is not imported.
	require.NoError(t, os.WriteFile(filepath.Join(data, "groups", "bad.json"), []byte(`{"id":"bad","profile":"nope"}`), 0o644))
	errb.Reset()
	assert.Equal(t, exitFail, run([]string{"-store-endpoints", eps, "-store-prefix", prefix, "-import-data", data}, &out, &errb))
	assert.Contains(t, errb.String(), "import refused")
}

func eventuallyBody(t *testing.T, u string, ok func(string) bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, body := get(t, u)
		if ok(body) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never answered as expected; last answer:\n%s", u, body)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestStoreOverTLS: a labserver reaches an etcd that serves clients only
// over TLS with client certificates, given cert, key and ca; without a
// client certificate it does not start.
func TestStoreOverTLS(t *testing.T) {
	c, certs := etcdtest.StartTLS(t, 3)
	l, srv := testLab(t, func(cfg *Config) {
		cfg.Store = &StoreConfig{Endpoints: c.Endpoints(), Prefix: "/tls/", Cert: certs.ClientCert, Key: certs.ClientKey, CA: certs.CA}
	})
	t.Cleanup(l.closeShared)
	code, body := get(t, srv.URL+"/healthz")
	require.Equal(t, 200, code, body)

	// No client certificate: refused by etcd, so labserver exits (2 s
	// request timeout after a 1 s dial timeout).
	var out, errb bytes.Buffer
	code = run([]string{"-http", "127.0.0.1:0", "-tftp", "", "-dns", "", "-store-endpoints", strings.Join(c.Endpoints(), ","),
		"-store-ca", certs.CA, "-store-dial-timeout", "1s"}, &out, &errb)
	assert.Equal(t, exitConfig, code)
	assert.Contains(t, errb.String(), "store: etcd")
}

// countFiles counts the regular files under dir.
func countFiles(t *testing.T, dir string) int {
	t.Helper()
	n := 0
	require.NoError(t, filepath.WalkDir(dir, func(_ string, e os.DirEntry, err error) error {
		if err == nil && e.Type().IsRegular() {
			n++
		}
		return err
	}))
	return n
}
