package etcdtest

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestClusterSpeaksWhatTheStoresUse checks that the Go client this module
// uses (go.etcd.io/etcd/client/v3) and the installed server (Debian 12:
// etcd 3.4) agree on everything the etcd stores use: KV, a Txn comparing a
// mod revision, leases that expire, and watches; and that the cluster
// keeps answering after a member is killed with SIGKILL.
func TestClusterSpeaksWhatTheStoresUse(t *testing.T) {
	c := Start(t, 3)
	cli := c.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	wch := cli.Watch(ctx, "k/", clientv3.WithPrefix())

	put, err := cli.Put(ctx, "k/a", "1")
	require.NoError(t, err)
	rev := put.Header.Revision

	// Compare-and-swap on the mod revision: the first wins, the stale one loses.
	tx, err := cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision("k/a"), "=", rev)).
		Then(clientv3.OpPut("k/a", "2")).Commit()
	require.NoError(t, err)
	require.True(t, tx.Succeeded)
	tx, err = cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision("k/a"), "=", rev)).
		Then(clientv3.OpPut("k/a", "3")).Else(clientv3.OpGet("k/a")).Commit()
	require.NoError(t, err)
	require.False(t, tx.Succeeded)
	require.Equal(t, "2", string(tx.Responses[0].GetResponseRange().Kvs[0].Value))

	// A key on a lease disappears when the lease expires.
	lg, err := cli.Grant(ctx, 2)
	require.NoError(t, err)
	_, err = cli.Put(ctx, "k/claim", "x", clientv3.WithLease(lg.ID))
	require.NoError(t, err)

	var sawPut, sawDelete bool
	for !sawDelete {
		select {
		case wr := <-wch:
			require.NoError(t, wr.Err())
			for _, ev := range wr.Events {
				if string(ev.Kv.Key) == "k/claim" {
					sawPut = sawPut || ev.Type == clientv3.EventTypePut
					sawDelete = sawDelete || ev.Type == clientv3.EventTypeDelete
				}
			}
		case <-ctx.Done():
			t.Fatal("the leased key was not deleted by its lease's expiry")
		}
	}
	require.True(t, sawPut)

	// kill -9 one member: the other two still make a quorum. A request
	// in flight when the leader dies may time out ("possibly due to
	// previous leader failure"): clients retry, so does this test.
	c.Kill(0)
	for attempt := 0; ; attempt++ {
		if _, err = cli.Put(ctx, "k/after-kill", "1"); err == nil || attempt == 20 {
			break
		}
		t.Logf("put after the kill: %v (retrying)", err)
	}
	require.NoError(t, err)
	c.Restart(0)
	g, err := clientv3.NewKV(cli).Get(ctx, "k/after-kill")
	require.NoError(t, err)
	require.Len(t, g.Kvs, 1)
}
