package etcdprofile_test

import (
	"context"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/metalboot/metalboot/profile"
	"github.com/metalboot/metalboot/profile/demo"
	"github.com/metalboot/metalboot/profile/etcdprofile"
)

// Import a data directory into etcd once; every server then serves it
// from a watched Store and picks up changes without a restart. (The test
// binary starts a 3-member etcd for the example and leaves it out when
// etcd is not installed.)
func Example() {
	ctx := context.Background()
	cli, err := clientv3.New(clientv3.Config{Endpoints: shared.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		panic(err)
	}
	defer cli.Close()

	n, err := etcdprofile.Import(ctx, cli, "/example/inventory/", demo.FS(), nil)
	fmt.Println("imported:", n > 0, err)

	changed := make(chan struct{}, 1)
	store, err := etcdprofile.Open(ctx, cli, etcdprofile.Options{
		Prefix:   "/example/inventory/",
		OnReload: func(*profile.Inventory, error) { changed <- struct{}{} },
	})
	if err != nil {
		panic(err)
	}
	defer store.Close()
	before := len(store.Inventory().Groups())

	// Any server (or etcdctl) changes the inventory.
	cli.Delete(ctx, "/example/inventory/groups/mp.json")
	<-changed
	fmt.Println("groups removed:", before-len(store.Inventory().Groups()))
	// Output:
	// imported: true <nil>
	// groups removed: 1
}
