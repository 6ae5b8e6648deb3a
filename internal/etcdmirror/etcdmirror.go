// Package etcdmirror keeps an in-memory copy of every key under an etcd
// prefix, current through a watch, for stores whose reads must not wait
// for the network (an inventory, install state). Writes go to etcd
// directly; the mirror learns of them from the watch (or from Apply).
package etcdmirror

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Mirror is a watched copy of the keys under Prefix.
type Mirror struct {
	cli      *clientv3.Client
	prefix   string
	timeout  time.Duration
	onChange func()
	log      *slog.Logger
	cancel   context.CancelFunc
	done     chan struct{}

	mu     sync.Mutex
	kv     map[string][]byte
	rev    map[string]int64 // revision each key's state was seen at (deleted keys too)
	synced bool
	err    error
}

// Open loads every key under prefix (within timeout) and starts the
// watch. onChange (nil: none) runs, on the watch's goroutine, after each
// batch of changes the watch (or a reload) applied.
func Open(ctx context.Context, cli *clientv3.Client, prefix string, timeout time.Duration, onChange func(), log *slog.Logger) (*Mirror, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := &Mirror{cli: cli, prefix: prefix, timeout: timeout, onChange: onChange, log: log,
		kv: map[string][]byte{}, rev: map[string]int64{}, done: make(chan struct{})}
	rev, err := m.load(ctx)
	if err != nil {
		return nil, err
	}
	wctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	go m.watch(wctx, rev)
	return m, nil
}

// Close stops the watch.
func (m *Mirror) Close() {
	m.cancel()
	<-m.done
}

// Snapshot returns a copy of every key (relative to the prefix) and value.
func (m *Mirror) Snapshot() map[string][]byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	return maps.Clone(m.kv)
}

// Get returns the value of key (relative to the prefix).
func (m *Mirror) Get(key string) ([]byte, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.kv[key]
	return v, ok
}

// Err is nil while the watch runs; otherwise why it does not.
func (m *Mirror) Err() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.synced {
		return nil
	}
	return fmt.Errorf("etcd watch of %s: %w", m.prefix, m.err)
}

// Apply records a write the caller made (key relative to the prefix;
// value nil: deleted) at revision rev, so reads see it before the watch
// delivers it.
func (m *Mirror) Apply(key string, value []byte, rev int64) {
	m.mu.Lock()
	m.apply(m.prefix+key, value, rev)
	m.mu.Unlock()
}

func (m *Mirror) apply(full string, value []byte, rev int64) bool {
	if seen, ok := m.rev[full]; ok && seen >= rev {
		return false
	}
	m.rev[full] = rev
	key := full[len(m.prefix):]
	if value == nil {
		delete(m.kv, key)
	} else {
		m.kv[key] = value
	}
	return true
}

func (m *Mirror) load(ctx context.Context) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, m.timeout)
	defer cancel()
	resp, err := m.cli.Get(ctx, m.prefix, clientv3.WithPrefix())
	if err != nil {
		return 0, fmt.Errorf("etcd: read %s: %w", m.prefix, err)
	}
	m.mu.Lock()
	seen := map[string]bool{}
	for _, kv := range resp.Kvs {
		seen[string(kv.Key)] = true
		v := kv.Value
		if v == nil {
			v = []byte{}
		}
		m.apply(string(kv.Key), v, kv.ModRevision)
	}
	for k := range m.rev {
		if !seen[k] {
			m.apply(k, nil, resp.Header.Revision)
		}
	}
	m.mu.Unlock()
	return resp.Header.Revision, nil
}

func (m *Mirror) setSynced(ok bool, err error) {
	m.mu.Lock()
	m.synced, m.err = ok, err
	m.mu.Unlock()
}

func (m *Mirror) changed() {
	if m.onChange != nil {
		m.onChange()
	}
}

func (m *Mirror) watch(ctx context.Context, rev int64) {
	defer close(m.done)
	m.setSynced(true, nil)
	for ctx.Err() == nil {
		err := m.follow(ctx, rev)
		if ctx.Err() != nil {
			return
		}
		m.setSynced(false, err)
		m.log.Warn("etcd watch ended; reloading", "prefix", m.prefix, "err", err)
		for ctx.Err() == nil {
			select {
			case <-ctx.Done():
				return
			case <-time.After(200 * time.Millisecond):
			}
			r, lerr := m.load(ctx)
			if lerr == nil {
				rev = r
				m.setSynced(true, nil)
				m.changed()
				break
			}
			m.setSynced(false, lerr)
		}
	}
}

func (m *Mirror) follow(ctx context.Context, rev int64) error {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	for wr := range m.cli.Watch(wctx, m.prefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1)) {
		if err := wr.Err(); err != nil {
			return err
		}
		any := false
		m.mu.Lock()
		for _, ev := range wr.Events {
			var v []byte
			if ev.Type == clientv3.EventTypePut {
				v = ev.Kv.Value
				if v == nil {
					v = []byte{}
				}
			}
			any = m.apply(string(ev.Kv.Key), v, ev.Kv.ModRevision) || any
		}
		m.mu.Unlock()
		if any {
			m.changed()
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return errors.New("watch channel closed")
}
