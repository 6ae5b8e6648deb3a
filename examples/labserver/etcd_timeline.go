package main

// The provisioning timeline shared through etcd: every event a labserver
// records is also written (asynchronously: the boot path never waits for
// etcd) as one key <prefix>timeline/<mac>/<time>-<server>, and every
// labserver watches the prefix and merges the other servers' events into
// its own timeline, so /machines shows a machine's whole boot whichever
// server answered each step. Bounded like the local timeline: at most
// maxEvents keys per machine and maxMachines machines are kept in etcd
// (the oldest are deleted by whichever server writes), and a full write
// queue drops events (counted in the log) rather than slow a boot.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/metalboot/metalboot/dhcpsrv/hwaddr"
)

type sharedTimeline struct {
	cli     *clientv3.Client
	prefix  string // <store prefix>timeline/
	id      string // this server's suffix on its keys
	timeout time.Duration
	t       *timeline
	log     *slog.Logger
	queue   chan timelineWrite
	cancel  context.CancelFunc
	wg      sync.WaitGroup

	mu      sync.Mutex
	keys    map[hwaddr.MAC][]string // sorted keys per machine (names only)
	dropped int
}

type timelineWrite struct {
	mac hwaddr.MAC
	e   event
}

// startSharedTimeline loads the events other servers recorded into t,
// then keeps writing t's new events and merging theirs.
func startSharedTimeline(ctx context.Context, cli *clientv3.Client, prefix string, timeout time.Duration, t *timeline, log *slog.Logger) (*sharedTimeline, error) {
	id := make([]byte, 4)
	_, _ = rand.Read(id)
	st := &sharedTimeline{cli: cli, prefix: prefix, id: hex.EncodeToString(id), timeout: timeout, t: t, log: log,
		queue: make(chan timelineWrite, 1024), keys: map[hwaddr.MAC][]string{}}
	lctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	resp, err := cli.Get(lctx, prefix, clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return nil, fmt.Errorf("timeline: %w", err)
	}
	for _, kv := range resp.Kvs {
		st.learn(string(kv.Key), kv.Value, true)
	}
	wctx, stop := context.WithCancel(context.Background())
	st.cancel = stop
	st.wg.Add(2)
	go st.write(wctx)
	go st.watch(wctx, resp.Header.Revision)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.onRecord = func(mac hwaddr.MAC, e event) {
		select {
		case st.queue <- timelineWrite{mac, e}:
		default:
			st.mu.Lock()
			st.dropped++
			n := st.dropped
			st.mu.Unlock()
			if n == 1 || n%1000 == 0 {
				log.Warn("timeline: etcd write queue full; events not shared", "dropped", n)
			}
		}
	}
	return st, nil
}

func (st *sharedTimeline) stop() {
	st.t.mu.Lock()
	st.t.onRecord = nil
	st.t.mu.Unlock()
	st.cancel()
	st.wg.Wait()
}

// key is <prefix><mac>/<unix nanoseconds, 20 digits>-<server id>: keys of
// one machine sort by time.
func (st *sharedTimeline) key(mac hwaddr.MAC, at time.Time) string {
	return fmt.Sprintf("%s%s/%020d-%s", st.prefix, mac, at.UnixNano(), st.id)
}

// learn records that key exists and, for another server's event, merges
// it into the timeline.
func (st *sharedTimeline) learn(key string, value []byte, merge bool) {
	rest, ok := strings.CutPrefix(key, st.prefix)
	if !ok {
		return
	}
	macS, name, ok := strings.Cut(rest, "/")
	mac, err := hwaddr.Parse(macS)
	if !ok || err != nil {
		return
	}
	st.mu.Lock()
	ks := st.keys[mac]
	if i, found := slices.BinarySearch(ks, name); !found {
		st.keys[mac] = slices.Insert(ks, i, name)
	}
	st.mu.Unlock()
	if !merge || strings.HasSuffix(name, "-"+st.id) {
		return
	}
	var e event
	if err := json.Unmarshal(value, &e); err != nil {
		st.log.Warn("timeline: event in etcd does not decode; skipped", "key", key, "err", err)
		return
	}
	if _, ok := validStage[e.Stage]; !ok || len(e.Detail) > 1024 {
		st.log.Warn("timeline: event in etcd is not one labserver writes; skipped", "key", key)
		return
	}
	st.t.insert(mac, e)
}

func (st *sharedTimeline) forget(key string) {
	rest, ok := strings.CutPrefix(key, st.prefix)
	if !ok {
		return
	}
	macS, name, _ := strings.Cut(rest, "/")
	mac, err := hwaddr.Parse(macS)
	if err != nil {
		return
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	ks := st.keys[mac]
	if i, found := slices.BinarySearch(ks, name); found {
		ks = slices.Delete(ks, i, i+1)
	}
	if len(ks) == 0 {
		delete(st.keys, mac)
	} else {
		st.keys[mac] = ks
	}
}

// write puts queued events into etcd and trims what is over the bounds.
func (st *sharedTimeline) write(ctx context.Context) {
	defer st.wg.Done()
	for {
		var w timelineWrite
		select {
		case <-ctx.Done():
			return
		case w = <-st.queue:
		}
		b, _ := json.Marshal(w.e)
		key := st.key(w.mac, w.e.Time)
		rctx, cancel := context.WithTimeout(ctx, st.timeout)
		_, err := st.cli.Put(rctx, key, string(b))
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				st.log.Warn("timeline: event not written to etcd", "mac", w.mac, "stage", w.e.Stage, "err", err)
			}
			continue
		}
		st.learn(key, nil, false)
		st.trim(ctx, w.mac)
	}
}

// trim deletes the oldest keys of mac beyond maxEvents, and the oldest
// machines beyond maxMachines.
func (st *sharedTimeline) trim(ctx context.Context, mac hwaddr.MAC) {
	var del []string
	st.mu.Lock()
	if ks := st.keys[mac]; len(ks) > maxEvents {
		for _, k := range ks[:len(ks)-maxEvents] {
			del = append(del, st.prefix+mac.String()+"/"+k)
		}
	}
	if len(st.keys) > maxMachines {
		var oldest hwaddr.MAC
		last := ""
		for m, ks := range st.keys {
			if n := ks[len(ks)-1]; last == "" || n < last {
				oldest, last = m, n
			}
		}
		del = append(del, st.prefix+oldest.String()+"/")
	}
	st.mu.Unlock()
	for _, k := range del {
		var opts []clientv3.OpOption
		if strings.HasSuffix(k, "/") {
			opts = append(opts, clientv3.WithPrefix())
		}
		rctx, cancel := context.WithTimeout(ctx, st.timeout)
		_, err := st.cli.Delete(rctx, k, opts...)
		cancel()
		if err != nil {
			return
		}
	}
}

// watch merges other servers' events as they come; after a broken watch
// it reads everything again (insert skips events it holds already).
func (st *sharedTimeline) watch(ctx context.Context, rev int64) {
	defer st.wg.Done()
	for ctx.Err() == nil {
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		for wr := range st.cli.Watch(wctx, st.prefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1)) {
			if wr.Err() != nil {
				break
			}
			for _, ev := range wr.Events {
				if ev.Type == clientv3.EventTypePut {
					st.learn(string(ev.Kv.Key), ev.Kv.Value, true)
				} else {
					st.forget(string(ev.Kv.Key))
				}
				rev = ev.Kv.ModRevision
			}
		}
		cancel()
		for ctx.Err() == nil {
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
			lctx, lcancel := context.WithTimeout(ctx, st.timeout)
			resp, err := st.cli.Get(lctx, st.prefix, clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
			lcancel()
			if err == nil {
				for _, kv := range resp.Kvs {
					st.learn(string(kv.Key), kv.Value, true)
				}
				rev = resp.Header.Revision
				break
			}
		}
	}
}

// validStage lists the stages a labserver records.
var validStage = map[string]struct{}{
	stageDiscover: {}, stageLease: {}, stageTFTP: {}, stageHTTPBoot: {}, stageGrub: {}, stageKernel: {},
	stageInitrd: {}, stageAsset: {}, stageIgnition: {}, stageInstalling: {}, stageInstalled: {},
	stageLocalBoot: {}, stageFailed: {}, stageReinstall: {},
}

// insert merges an event another server recorded into mac's record, in
// time order, unless the record holds it already; the same bounds as
// record apply.
func (t *timeline) insert(mac hwaddr.MAC, e event) {
	if mac.IsZero() {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	r := t.machineLocked(mac)
	i, _ := slices.BinarySearchFunc(r.Events, e.Time, func(x event, at time.Time) int { return x.Time.Compare(at) })
	for j := i; j < len(r.Events) && r.Events[j].Time.Equal(e.Time); j++ {
		if x := r.Events[j]; x.Stage == e.Stage && x.Detail == e.Detail && x.IP == e.IP {
			return // merged before (a reload after a broken watch)
		}
	}
	if len(r.Events) >= maxEvents {
		if i == 0 {
			return // older than everything kept
		}
		r.Events = slices.Delete(r.Events, 0, 1)
		i--
	}
	r.Events = slices.Insert(r.Events, i, e)
	if e.Time.After(r.Last) {
		r.Last = e.Time
		if e.IP != "" {
			r.IP = e.IP
		}
	}
	if ip, err := netip.ParseAddr(e.IP); err == nil {
		if len(t.byIP) >= 4*maxMachines {
			clear(t.byIP)
		}
		t.byIP[ip.Unmap()] = mac
	}
}
