package main

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// writeData writes a data directory from name → content.
func writeData(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(body), 0o644))
	}
	return dir
}

// fcosData is a matchbox data directory as its Fedora CoreOS example
// writes it (initrd --name main, initrd=main, iPXE variables), with a
// generic template.
var fcosData = map[string]string{
	"profiles/fcos.json": `{"id": "fcos", "name": "Fedora CoreOS", "generic_id": "setup.tmpl", "boot": {
		"kernel": "/assets/fedora-coreos/kernel",
		"initrd": ["--name main /assets/fedora-coreos/initramfs.img"],
		"args": ["initrd=main", "ignition.config.url=http://matchbox.example.com:8080/ignition?uuid=${uuid}&mac=${mac:hexhyp}"]}}`,
	"groups/node1.json":  `{"id": "node1", "profile": "fcos", "selector": {"mac": "52:54:00:a1:9c:ae"}, "metadata": {"etcd_name": "node1", "pxe": {"loader": "any"}}}`,
	"generic/setup.tmpl": "name={{.etcd_name}} mac={{.mac}} foo={{.request.query.foo}}\n",
}

// TestMatchboxEndpoints: a matchbox data directory switches unchanged:
// /boot.ipxe (and .0), /ipxe, /grub, /generic and /metadata answer from
// it, and the timeline shows the iPXE stages.
func TestMatchboxEndpoints(t *testing.T) {
	data := writeData(t, fcosData)
	_, srv := testLab(t, func(c *Config) { c.Data = data })

	for _, p := range []string{"/boot.ipxe", "/boot.ipxe.0"} {
		code, body := get(t, srv.URL+p)
		require.Equal(t, 200, code, body)
		assert.True(t, strings.HasPrefix(body, "#!ipxe\n"), body)
		assert.Contains(t, body, "imgfetch --name metalboot http://127.0.0.1:8080/ipxe?uuid=${uuid}&mac=${mac:hexhyp}&")
	}
	code, body := get(t, srv.URL+"/ipxe?uuid=&mac=52-54-00-a1-9c-ae&domain=lab&hostname=&serial=&arch=x86_64")
	require.Equal(t, 200, code, body)
	assert.Contains(t, body, "\nkernel http://127.0.0.1:8080/assets/fedora-coreos/kernel initrd=main ignition.config.url=http://matchbox.example.com:8080/ignition?uuid=&mac=52-54-00-a1-9c-ae || goto metalboot_failed\n")
	assert.Contains(t, body, "\ninitrd --name main http://127.0.0.1:8080/assets/fedora-coreos/initramfs.img || goto metalboot_failed\n")

	code, body = get(t, srv.URL+"/grub?mac=52:54:00:a1:9c:ae")
	require.Equal(t, 200, code, body)
	grubCheck(t, body)
	assert.Contains(t, body, "initrd '/assets/fedora-coreos/initramfs.img'")
	assert.NotContains(t, body, "initrd=main")

	code, body = get(t, srv.URL+"/generic?mac=52:54:00:a1:9c:ae&foo=bar")
	require.Equal(t, 200, code, body)
	assert.Equal(t, "name=node1 mac=52:54:00:a1:9c:ae foo=bar\n", body)
	code, body = get(t, srv.URL+"/metadata?mac=52-54-00-a1-9c-ae&foo=bar")
	require.Equal(t, 200, code, body)
	assert.Equal(t, "ETCD_NAME=node1\nMAC=52:54:00:a1:9c:ae\nPXE_LOADER=any\nREQUEST_QUERY_FOO=bar\nREQUEST_QUERY_MAC=52:54:00:a1:9c:ae\nREQUEST_RAW_QUERY='mac=52-54-00-a1-9c-ae&foo=bar'\n", body)

	code, body = get(t, srv.URL+"/ipxe?mac=52-54-00-00-00-99")
	assert.Equal(t, 404, code, body)
	code, body = get(t, srv.URL+"/machines?format=json")
	require.Equal(t, 200, code)
	for _, stage := range []string{`"stage": "ipxe"`, `"stage": "grub"`, `"stage": "generic"`, `"stage": "metadata"`} {
		assert.Contains(t, body, stage)
	}
	assert.Contains(t, body, `"detail": "profile fcos, iPXE x86_64"`)
	assert.Contains(t, body, `/ipxe answered 404`)
}

// TestLoaderProblemsAtLoad: a profile GRUB cannot boot stops the load
// when its machines boot with GRUB (the lab's loader), naming the file
// and the loader; one only iPXE cannot boot is a warning naming both.
func TestLoaderProblemsAtLoad(t *testing.T) {
	files := map[string]string{
		"profiles/tls.json": `{"boot": {"kernel": "https://mirror.example/vmlinuz"}}`,
		"groups/tls.json":   `{"profile": "tls"}`,
	}
	empty := ""
	c := &Config{TFTP: &empty, DNS: &empty, Data: writeData(t, files)}
	s, err := c.resolve()
	require.NoError(t, err)
	_, err = newLab(s, slog.New(slog.DiscardHandler))
	require.Error(t, err)
	assert.Contains(t, err.Error(), `profiles/tls.json: profile "tls" (group "tls") cannot be booted with GRUB`)
	assert.Contains(t, err.Error(), "no TLS")

	files = map[string]string{
		"profiles/dev.json": `{"boot": {"kernel": "(http,10.0.0.1:8080)/vmlinuz"}}`,
		"groups/dev.json":   `{"profile": "dev"}`,
	}
	c = &Config{TFTP: &empty, DNS: &empty, Data: writeData(t, files)}
	s, err = c.resolve()
	require.NoError(t, err)
	var logs bytes.Buffer
	_, err = newLab(s, slog.New(slog.NewTextHandler(&logs, nil)))
	require.NoError(t, err)
	assert.Contains(t, logs.String(), "file=profiles/dev.json profile=dev loader=iPXE")
}
