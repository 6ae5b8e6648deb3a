package tftpsrv_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/pin/tftp/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/metalboot/metalboot/tftpsrv"
)

// A Secure Boot lab's TFTP tree: GRUB's files from the TFTP root, kernels
// from the assets directory mounted at assets/, and two handlers chained:
// the first-stage grub.cfg and a per-machine configuration by MAC (what
// grubcfg.FirstStageTFTP and grubcfg.TFTPConfigHandler do).
func ExampleMount() {
	root := fstest.MapFS{"grubx64.efi": {Data: []byte("signed grub")}}
	assets := fstest.MapFS{"vmlinuz": {Data: []byte("signed kernel")}}
	fsys, err := tftpsrv.Mount(root, "assets", assets)
	if err != nil {
		fmt.Println(err)
		return
	}
	first := tftpsrv.HandlerFunc(func(_ context.Context, req *tftpsrv.Request) ([]byte, error) {
		if req.Filename != "grub/grub.cfg" {
			return nil, tftpsrv.ErrNotHandled
		}
		return []byte("configfile \"(tftp)/grub?mac=${net_default_mac}\"\n"), nil
	})
	perMachine := tftpsrv.HandlerFunc(func(_ context.Context, req *tftpsrv.Request) ([]byte, error) {
		mac, ok := strings.CutPrefix(req.Filename, "grub?mac=")
		if !ok {
			return nil, tftpsrv.ErrNotHandled
		}
		return []byte("# for " + mac + "\nlinux (tftp)/assets/vmlinuz\n"), nil
	})
	srv := &tftpsrv.Server{Addr: "127.0.0.1:0", FS: fsys, Handler: tftpsrv.Chain(first, perMachine)}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	conn, err := srv.Listen(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer conn.Close()
	go srv.Serve(ctx, conn)

	c, _ := tftp.NewClient(conn.LocalAddr().String())
	for _, name := range []string{"grubx64.efi", "grub/grub.cfg", "grub?mac=52:54:00:12:34:56", "assets/vmlinuz"} {
		wt, err := c.Receive(name, "octet")
		if err != nil {
			fmt.Printf("get %s: %v\n", name, err)
			continue
		}
		var b bytes.Buffer
		_, _ = wt.WriteTo(&b)
		fmt.Printf("%s: %q\n", name, b.String())
	}
	// Output:
	// grubx64.efi: "signed grub"
	// grub/grub.cfg: "configfile \"(tftp)/grub?mac=${net_default_mac}\"\n"
	// grub?mac=52:54:00:12:34:56: "# for 52:54:00:12:34:56\nlinux (tftp)/assets/vmlinuz\n"
	// assets/vmlinuz: "signed kernel"
}

// TestMount: names route to the mounted tree or the root; what the root
// has at the mount point is hidden; a link inside the mounted tree that
// climbs out of it is refused by the Server, one that stays inside is
// followed; a handler's real error stops the chain.
func TestMount(t *testing.T) {
	dir := t.TempDir()
	rootDir, subDir := filepath.Join(dir, "root"), filepath.Join(dir, "sub")
	for name, data := range map[string]string{
		"root/grubx64.efi":   "grub",
		"root/assets/hidden": "hidden",
		"root/secret":        "secret",
		"sub/vmlinuz":        "kernel",
		"sub/images/initrd":  "initrd",
	} {
		p := filepath.Join(dir, filepath.FromSlash(name))
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(data), 0o644))
	}
	require.NoError(t, os.Symlink("../secret", filepath.Join(subDir, "escape")))
	require.NoError(t, os.Symlink("images/initrd", filepath.Join(subDir, "initrd")))
	fsys, err := tftpsrv.Mount(os.DirFS(rootDir), "assets", os.DirFS(subDir))
	require.NoError(t, err)
	for name, want := range map[string]string{"grubx64.efi": "grub", "assets/vmlinuz": "kernel", "assets/images/initrd": "initrd"} {
		b, err := fs.ReadFile(fsys, name)
		require.NoError(t, err, name)
		assert.Equal(t, want, string(b))
	}
	_, err = fs.Stat(fsys, "assets/hidden")
	assert.ErrorIs(t, err, fs.ErrNotExist, "the root's own assets/ is hidden")
	_, err = fs.Stat(fsys, "../x")
	assert.ErrorIs(t, err, fs.ErrInvalid)

	h := tftpsrv.HandlerFunc(func(_ context.Context, req *tftpsrv.Request) ([]byte, error) {
		if req.Filename == "broken" {
			return nil, errors.New("backend down")
		}
		return nil, fs.ErrNotExist
	})
	srv := &tftpsrv.Server{Addr: "127.0.0.1:0", FS: fsys, Handler: tftpsrv.Chain(h, tftpsrv.HandlerFunc(func(context.Context, *tftpsrv.Request) ([]byte, error) {
		return []byte("second"), nil
	}))}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	conn, err := srv.Listen(ctx)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	go srv.Serve(ctx, conn)
	c, err := tftp.NewClient(conn.LocalAddr().String())
	require.NoError(t, err)
	get := func(name string) (string, error) {
		wt, err := c.Receive(name, "octet")
		if err != nil {
			return "", err
		}
		var b bytes.Buffer
		_, err = wt.WriteTo(&b)
		return b.String(), err
	}
	got, err := get("anything")
	require.NoError(t, err)
	assert.Equal(t, "second", got, "fs.ErrNotExist passes to the next handler")
	_, err = get("broken")
	assert.ErrorContains(t, err, "server error", "a handler's failure is not taken for not found")

	// Links, through a Server without handlers.
	srv2 := &tftpsrv.Server{Addr: "127.0.0.1:0", FS: fsys}
	conn2, err := srv2.Listen(ctx)
	require.NoError(t, err)
	t.Cleanup(func() { conn2.Close() })
	go srv2.Serve(ctx, conn2)
	c2, err := tftp.NewClient(conn2.LocalAddr().String())
	require.NoError(t, err)
	wt, err := c2.Receive("assets/initrd", "octet")
	require.NoError(t, err)
	var b bytes.Buffer
	_, err = wt.WriteTo(&b)
	require.NoError(t, err)
	assert.Equal(t, "initrd", b.String(), "a link inside the mounted tree")
	_, err = c2.Receive("assets/escape", "octet")
	assert.ErrorContains(t, err, "access violation", "a link out of the mounted tree into the root")

	_, err = tftpsrv.Mount(os.DirFS(rootDir), ".", os.DirFS(subDir))
	assert.ErrorIs(t, err, tftpsrv.ErrConfig)
	_, err = tftpsrv.Mount(os.DirFS(rootDir), "/assets", os.DirFS(subDir))
	assert.ErrorIs(t, err, tftpsrv.ErrConfig)
}
