package etcdprofile_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/metalboot/metalboot/internal/etcdtest"
	"github.com/metalboot/metalboot/profile"
	"github.com/metalboot/metalboot/profile/demo"
	"github.com/metalboot/metalboot/profile/etcdprofile"
)

var shared *etcdtest.Cluster

func TestMain(m *testing.M) { os.Exit(etcdtest.Main(m, 3, &shared)) }

// TestWatchedInventory: two stores on one prefix serve an imported
// data directory; a change reaches both; a broken change is rejected by
// both (Err says why, OnReload hears it) and the last good inventory
// keeps serving; mending it serves the mended one.
func TestWatchedInventory(t *testing.T) {
	c := etcdtest.Shared(t, shared)
	cli := c.Client(t)
	ctx := context.Background()
	const prefix = "/watched/inventory/"
	n, err := etcdprofile.Import(ctx, cli, prefix, demo.FS(), nil)
	require.NoError(t, err)
	require.Equal(t, demoFiles(t), n)

	var mu sync.Mutex
	var rejected []error
	open := func() *etcdprofile.Store {
		s, err := etcdprofile.Open(ctx, cli, etcdprofile.Options{Prefix: prefix, OnReload: func(_ *profile.Inventory, err error) {
			if err != nil {
				mu.Lock()
				rejected = append(rejected, err)
				mu.Unlock()
			}
		}})
		require.NoError(t, err)
		t.Cleanup(func() { s.Close() })
		return s
	}
	a, b := open(), open()
	want := demoInventory(t)
	for _, s := range []*etcdprofile.Store{a, b} {
		assert.Len(t, s.Inventory().Groups(), len(want.Groups()))
		_, ok := s.Inventory().Profile("install")
		assert.True(t, ok)
	}

	// A new profile and group: both serve them.
	_, err = cli.Put(ctx, prefix+"profiles/extra.json", `{"id":"extra","boot":{"kernel":"/k","args":["x=1"]}}`)
	require.NoError(t, err)
	_, err = cli.Put(ctx, prefix+"groups/extra.json", `{"id":"extra","profile":"extra","selector":{"mac":"52:54:00:00:00:77","os":"installed"}}`)
	require.NoError(t, err)
	for _, s := range []*etcdprofile.Store{a, b} {
		etcdtest.Eventually(t, "the extra group", func() bool {
			_, ok := s.Inventory().Profile("extra")
			return ok && len(s.Inventory().Groups()) == len(want.Groups())+1
		})
	}

	// Broken: a group naming a missing profile.
	before := a.Inventory()
	_, err = cli.Put(ctx, prefix+"groups/broken.json", `{"id":"broken","profile":"missing","selector":{"mac":"52:54:00:00:00:78","os":"installed"}}`)
	require.NoError(t, err)
	for _, s := range []*etcdprofile.Store{a, b} {
		etcdtest.Eventually(t, "the rejection", func() bool { return s.Err() != nil })
		assert.ErrorIs(t, s.Err(), profile.ErrInvalid)
		assert.Contains(t, s.Err().Error(), "missing")
		assert.NoError(t, s.WatchErr())
		_, ok := s.Inventory().Profile("extra")
		assert.True(t, ok, "the last good inventory serves")
	}
	assert.Same(t, before, a.Inventory())
	mu.Lock()
	assert.NotEmpty(t, rejected)
	mu.Unlock()

	// Mended: served again.
	_, err = cli.Put(ctx, prefix+"profiles/missing.json", `{"id":"missing","boot":{"kernel":"/k"}}`)
	require.NoError(t, err)
	for _, s := range []*etcdprofile.Store{a, b} {
		etcdtest.Eventually(t, "the mended inventory", func() bool { _, ok := s.Inventory().Profile("missing"); return ok && s.Err() == nil })
	}
}

func demoInventory(t *testing.T) *profile.Inventory {
	inv, err := profile.LoadFS(demo.FS())
	require.NoError(t, err)
	return inv
}

// TestImportExport: a data directory goes in and comes back out byte for
// byte; an import replaces (keys of files not imported are deleted); a
// broken directory is refused whole; Export refuses a used directory.
func TestImportExport(t *testing.T) {
	c := etcdtest.Shared(t, shared)
	cli := c.Client(t)
	ctx := context.Background()
	const prefix = "/io/inventory/"
	_, err := cli.Put(ctx, prefix+"groups/stale.json", "{}")
	require.NoError(t, err)
	_, err = etcdprofile.Import(ctx, cli, prefix, demo.FS(), nil)
	require.NoError(t, err)
	g, err := cli.Get(ctx, prefix+"groups/stale.json")
	require.NoError(t, err)
	assert.Empty(t, g.Kvs, "an import replaces the inventory")

	dir := filepath.Join(t.TempDir(), "out")
	n, err := etcdprofile.Export(ctx, cli, prefix, dir)
	require.NoError(t, err)
	assert.Equal(t, demoFiles(t), n)
	src := t.TempDir()
	require.NoError(t, os.CopyFS(src, demo.FS()))
	require.NoError(t, filepath.WalkDir(src, func(p string, e os.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		want, _ := os.ReadFile(p)
		got, err := os.ReadFile(filepath.Join(dir, rel))
		if assert.NoError(t, err, rel) {
			assert.Equal(t, string(want), string(got), rel)
		}
		return nil
	}))
	_, err = etcdprofile.Export(ctx, cli, prefix, dir)
	require.ErrorContains(t, err, "already exists")

	require.NoError(t, os.WriteFile(filepath.Join(src, "groups", "bad.json"), []byte(`{"id":"bad","profile":"nope"}`), 0o644))
	_, err = etcdprofile.Import(ctx, cli, prefix, os.DirFS(src), nil)
	require.ErrorIs(t, err, profile.ErrInvalid)
	// The check function can refuse too.
	_, err = etcdprofile.Import(ctx, cli, prefix, demo.FS(), func(*profile.Inventory) error { return errors.New("no thanks") })
	require.ErrorContains(t, err, "no thanks")
	g, err = cli.Get(ctx, prefix+"groups/bad.json")
	require.NoError(t, err)
	assert.Empty(t, g.Kvs, "nothing of a refused import is written")
}

// demoFiles counts the files of the demo data directory.
func demoFiles(t *testing.T) int {
	t.Helper()
	n := 0
	require.NoError(t, fs.WalkDir(demo.FS(), ".", func(_ string, e fs.DirEntry, err error) error {
		if err == nil && !e.IsDir() {
			n++
		}
		return err
	}))
	return n
}
