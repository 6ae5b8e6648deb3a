// Command grubload is a closed-loop HTTP load generator for /grub (and any
// GET endpoint): C workers on keep-alive connections repeat GET URL for a
// fixed time and it reports requests per second and latency percentiles.
// internal/bench/grub.sh uses it to compare metalboot with matchbox.
//
//	grubload -url 'http://127.0.0.1:18080/grub?mac=00:23:32:2f:40:3c' -c 8 -d 5s -expect 'ignition?mac='
//
// Output is one line: name, req/s, p50, p99, max (microseconds), errors.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
)

func main() {
	var (
		url    = flag.String("url", "", "URL to GET (required); several, comma-separated, are used round-robin")
		conc   = flag.Int("c", 8, "concurrent workers (connections)")
		dur    = flag.Duration("d", 5*time.Second, "measured duration")
		warm   = flag.Duration("warmup", time.Second, "unmeasured warm-up")
		expect = flag.String("expect", "", "substring every 200 body must contain")
		name   = flag.String("name", "", "label printed first")
		max    = flag.Int("max", 5_000_000, "stop after this many requests")
	)
	flag.Parse()
	if *url == "" || *conc < 1 || *dur <= 0 {
		fmt.Fprintln(os.Stderr, "grubload: -url is required; -c and -d must be positive")
		os.Exit(2)
	}
	urls := strings.Split(*url, ",")
	tr := &http.Transport{
		MaxIdleConnsPerHost: *conc,
		DialContext:         (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
	}
	client := &http.Client{Transport: tr, Timeout: 5 * time.Second}

	run := func(d time.Duration, record bool) (lat []time.Duration, errs int, elapsed time.Duration) {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		defer cancel()
		var mu sync.Mutex
		var wg sync.WaitGroup
		start := time.Now()
		perWorker := *max / *conc
		for w := 0; w < *conc; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				var local []time.Duration
				bad := 0
				buf := new(bytes.Buffer)
				for i := 0; i < perWorker && ctx.Err() == nil; i++ {
					u := urls[(w+i)%len(urls)]
					t0 := time.Now()
					resp, err := client.Get(u)
					if err == nil {
						buf.Reset()
						_, err = io.Copy(buf, resp.Body)
						resp.Body.Close()
						if err == nil && (resp.StatusCode != 200 || !bytes.Contains(buf.Bytes(), []byte(*expect))) {
							err = fmt.Errorf("status %d", resp.StatusCode)
						}
					}
					if ctx.Err() != nil {
						break // cut by the deadline: not a sample
					}
					if err != nil {
						bad++
						continue
					}
					if record {
						local = append(local, time.Since(t0))
					}
				}
				mu.Lock()
				lat = append(lat, local...)
				errs += bad
				mu.Unlock()
			}(w)
		}
		wg.Wait()
		return lat, errs, time.Since(start)
	}
	if *warm > 0 {
		run(*warm, false)
	}
	lat, errs, elapsed := run(*dur, true)
	if len(lat) == 0 {
		fmt.Fprintf(os.Stderr, "grubload: no successful request (%d errors)\n", errs)
		os.Exit(1)
	}
	slices.Sort(lat)
	pct := func(p float64) int64 { return lat[int(float64(len(lat)-1)*p)].Microseconds() }
	fmt.Printf("%s %.0f %d %d %d %d\n", *name, float64(len(lat))/elapsed.Seconds(), pct(0.50), pct(0.99), lat[len(lat)-1].Microseconds(), errs)
}
