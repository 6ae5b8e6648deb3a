// Command growth measures what metalboot costs as a lab grows (issue #18's
// growth table): for inventories of N machines (one group per MAC with a
// hostname and an address, plus a default group and an installed group, as
// a data directory on disk), the load and reload time of the inventory, the
// heap it holds, and the p99 latency of /grub and /ignition for random
// machines at a fixed offered load; and for a DHCP lease journal of M
// leases, the time OpenJournal takes to replay it and the heap it holds.
//
//	go run ./internal/bench/growth -n 100,10000,100000 -leases 100000
//
// Output: one human line per size and RESULT lines for internal/bench/run.
// Everything runs in this process on 127.0.0.1; the load is open loop
// (requests leave on a schedule, so latency is measured at that load).
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/metalboot/metalboot/dhcpsrv"
	"github.com/metalboot/metalboot/dhcpsrv/hwaddr"
	"github.com/metalboot/metalboot/grubcfg"
	"github.com/metalboot/metalboot/ignition"
	"github.com/metalboot/metalboot/profile"
)

func main() {
	sizes := flag.String("n", "100,10000,100000", "inventory sizes (machines)")
	leases := flag.Int("leases", 100000, "leases in the journal to replay (0: skip)")
	rate := flag.Int("rate", 1000, "offered /grub requests per second (and a tenth of it for /ignition)")
	dur := flag.Duration("d", 3*time.Second, "duration of each latency run")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fail(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fail(err)
		}
		defer pprof.StopCPUProfile()
	}
	var base struct{ grub, ign float64 }
	for _, s := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(s)
		if err != nil {
			fail(err)
		}
		r := inventory(n, *rate, *dur)
		fmt.Printf("inventory %7d machines: load %8.3fs, reload %8.3fs (CPU %.3fs), heap %7.1f MiB (%5.2f KiB/machine), /grub p99 %.2f ms at %d/s, /ignition p99 %.2f ms at %d/s, errors %d\n",
			n, r.load.Seconds(), r.reload.Seconds(), r.reloadCPU.Seconds(), r.heap/(1<<20), r.heap/1024/float64(n), r.grub, *rate, r.ign, *rate/10, r.errors)
		fmt.Printf("RESULT name=growth_%d_reload_s metalboot=%.3f peer=target:3 ratio=n/a\n", n, r.reload.Seconds())
		fmt.Printf("RESULT name=growth_%d_reload_cpu_s metalboot=%.3f peer=none:0 ratio=n/a\n", n, r.reloadCPU.Seconds())
		fmt.Printf("RESULT name=growth_%d_heap_kib_per_machine metalboot=%.2f peer=none:0 ratio=n/a\n", n, r.heap/1024/float64(n))
		fmt.Printf("RESULT name=growth_%d_grub_p99_ms metalboot=%.3f peer=none:0 ratio=n/a\n", n, r.grub)
		if base.grub == 0 {
			base.grub, base.ign = r.grub, r.ign
		} else {
			fmt.Printf("RESULT name=growth_%d_grub_p99_vs_smallest metalboot=%.3f peer=smallest:%.3f ratio=%.2f\n", n, r.grub, base.grub, r.grub/base.grub)
		}
	}
	if *leases > 0 {
		d, heap := journal(*leases)
		fmt.Printf("lease journal %d leases: OpenJournal %.3fs, heap %.1f MiB (%.0f B/lease)\n", *leases, d.Seconds(), heap/(1<<20), heap/float64(*leases))
		fmt.Printf("RESULT name=dhcp_start_%d_leases_s metalboot=%.3f peer=none:0 ratio=n/a\n", *leases, d.Seconds())
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "growth:", err)
	os.Exit(1)
}

func heapInUse() float64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return float64(m.HeapInuse)
}

func mac(i int) hwaddr.MAC {
	return hwaddr.MAC{0x02, 0, byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i)}
}

type result struct {
	load, reload time.Duration
	reloadCPU    time.Duration // user+system CPU time of the reload (all threads)
	heap         float64
	grub, ign    float64 // p99 ms
	errors       int
}

// inventory writes a data directory of n machines, loads it twice and
// serves /grub and /ignition from it under load.
func inventory(n, rate int, dur time.Duration) result {
	dir, err := os.MkdirTemp("", "mb-growth-")
	if err != nil {
		fail(err)
	}
	defer os.RemoveAll(dir)
	for _, d := range []string{"profiles", "groups", "ignition"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			fail(err)
		}
	}
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			fail(err)
		}
	}
	write("profiles/install.json", `{"id": "install", "boot": {"kernel": "/assets/vmlinuz", "initrd": ["/assets/initrd"], "args": ["ignition.config.url={{.BaseURL}}/ignition?mac={{.MAC}}", "console=ttyS0"]}, "ignition_id": "install.yaml.tmpl"}`)
	write("ignition/install.yaml.tmpl", "variant: flatcar\nversion: 1.0.0\nstorage:\n  files:\n    - path: /etc/hostname\n      contents:\n        inline: \"{{.hostname}}\"\n")
	write("groups/default.json", `{"id": "default", "profile": "install", "metadata": {"hostname": "unknown"}}`)
	for i := range n {
		m := mac(i)
		ip := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		write(fmt.Sprintf("groups/m%d.json", i), fmt.Sprintf(`{"id": "m%d", "profile": "install", "selector": {"mac": "%s"}, "metadata": {"hostname": "m%d.lab", "ip": "%s"}}`, i, m, i, ip))
	}
	// A lab's files are older than a load: profile's reload skips the files
	// unchanged since the last load unless they changed within 2 s of it
	// (racy, read again), so let the generated ones age past that.
	time.Sleep(2500 * time.Millisecond)
	before := heapInUse()
	ign := &ignition.Handler{}
	t0 := time.Now()
	store, err := profile.OpenFS(os.DirFS(dir), ign.Check, nil)
	if err != nil {
		fail(err)
	}
	var r result
	r.load = time.Since(t0)
	t0 = time.Now()
	c0 := cpuTime()
	if err := store.Reload(); err != nil {
		fail(err)
	}
	r.reload = time.Since(t0)
	r.reloadCPU = cpuTime() - c0
	r.heap = heapInUse() - before

	res := &profile.Resolver{Store: store, BaseURL: "http://127.0.0.1:8080"}
	ign.Resolver = res
	mux := http.NewServeMux()
	mux.Handle("/grub", &grubcfg.Handler{Resolver: res})
	mux.Handle("/ignition", ign)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fail(err)
	}
	srv := &http.Server{Handler: mux}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	base := "http://" + ln.Addr().String()
	var errs int
	r.grub, errs = load(base+"/grub?mac=", n, rate, dur)
	r.errors += errs
	r.ign, errs = load(base+"/ignition?mac=", n, max(rate/10, 1), dur)
	r.errors += errs
	return r
}

// load sends rate requests per second for dur, each for a random machine,
// on a schedule (open loop), and returns the p99 latency in ms counted
// from each request's scheduled time, and the number of failures.
func load(prefix string, n, rate int, dur time.Duration) (float64, int) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: 10 * time.Second}
	// Warm up (connections dialled, caches filled) before anything counts.
	var warm sync.WaitGroup
	for range 64 {
		warm.Add(1)
		go func() {
			defer warm.Done()
			for range 4 {
				if resp, err := client.Get(prefix + mac(rand.IntN(n)).String()); err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
		}()
	}
	warm.Wait()
	total := int(float64(rate) * dur.Seconds())
	lat := make([]float64, total)
	var mu sync.Mutex
	errs := 0
	start := time.Now().Add(100 * time.Millisecond)
	var wg sync.WaitGroup
	for i := range total {
		at := start.Add(time.Duration(i) * time.Second / time.Duration(rate))
		time.Sleep(time.Until(at))
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := client.Get(prefix + mac(rand.IntN(n)).String())
			ok := err == nil && resp.StatusCode == 200
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			lat[i] = float64(time.Since(at)) / float64(time.Millisecond)
			if !ok {
				mu.Lock()
				errs++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	slices.Sort(lat)
	return lat[len(lat)*99/100], errs
}

// journal writes m leases to a journal (concurrently, so the journal's
// group commit batches the syncs), then measures replaying it.
func journal(m int) (time.Duration, float64) {
	dir, err := os.MkdirTemp("", "mb-growth-journal-")
	if err != nil {
		fail(err)
	}
	defer os.RemoveAll(dir)
	j, err := dhcpsrv.OpenJournal(dir)
	if err != nil {
		fail(err)
	}
	ctx := context.Background()
	var wg sync.WaitGroup
	workers := 64
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < m; i += workers {
				l := dhcpsrv.Lease{IP: netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), MAC: mac(i),
					Hostname: "m" + strconv.Itoa(i), State: dhcpsrv.StateBound, Expires: time.Now().Add(time.Hour)}
				if _, err := j.CompareAndSwap(ctx, 0, l); err != nil {
					fail(err)
				}
			}
		}()
	}
	wg.Wait()
	if err := j.Close(); err != nil {
		fail(err)
	}
	before := heapInUse()
	t0 := time.Now()
	j, err = dhcpsrv.OpenJournal(dir)
	if err != nil {
		fail(err)
	}
	d := time.Since(t0)
	heap := heapInUse() - before
	got, err := j.Leases()
	if err != nil || len(got) != m {
		fail(fmt.Errorf("replayed %d leases of %d: %v", len(got), m, err))
	}
	_ = j.Close()
	return d, heap
}
