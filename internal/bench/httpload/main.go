// Command httpload is a small closed-loop HTTP/1.1 load generator for the
// metalboot benchmarks (internal/bench/http.sh): N concurrent clients, each
// on its own keep-alive connection, send GET requests over a list of URLs in
// turn (one shared cursor: each URL once per pass) for a fixed duration, and
// it reports requests per second,
// p50/p90/p99/max latency and errors.
//
//	httpload -c 8 -d 10s -warmup 1s -expect 'ignition?' \
//	    'http://127.0.0.1:18480/grub?mac=00:23:32:2f:40:3c'
//
// It speaks HTTP/1.1 directly on the TCP connection (one prepared request
// per URL, a minimal response parser for Content-Length and chunked bodies)
// instead of using net/http's client, so the load generator costs a few
// microseconds per request and does not become the bottleneck when it
// shares a small machine with the server under test. Every response must
// have status -status (200) and, with -expect, contain that substring;
// anything else, a timeout or a broken connection counts as an error (the
// connection is then redialled).
//
// Output (stdout), one machine-readable line then one human line:
//
//	httpload name=grub rps=23456.7 p50_us=310 p90_us=402 p99_us=800 max_us=4100 requests=234567 errors=0 conns=8 seconds=10.00 bytes=698 offered=0
//	grub: 23457 req/s, p50 0.31 ms, p99 0.80 ms, max 4.10 ms, 0 errors (8 conns, closed loop, 10.0 s, 698 B/resp)
//
// With -rate R it runs open loop instead: the clients together send R
// requests per second on a fixed schedule, so latency is measured at a
// given load rather than at saturation (where a closed loop's latency is
// just connections/throughput). A request sent late because the previous
// answer came late counts from its scheduled time (no coordinated
// omission).
//
// The process exits 1 when no request succeeded, 2 on bad flags.
package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// target is one URL with its prepared request bytes.
type target struct {
	addr string // host:port to dial
	req  []byte // full request, ready to write
}

// parseTarget prepares a GET request for raw (an http:// URL).
func parseTarget(raw string) (target, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return target{}, fmt.Errorf("url %q: %w", raw, err)
	}
	if u.Scheme != "http" || u.Host == "" {
		return target{}, fmt.Errorf("url %q: only http://host:port/... is supported", raw)
	}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "80")
	}
	req := "GET " + u.RequestURI() + " HTTP/1.1\r\nHost: " + u.Host +
		"\r\nUser-Agent: metalboot-httpload\r\nAccept: */*\r\n\r\n"
	return target{addr: addr, req: []byte(req)}, nil
}

var errProtocol = errors.New("malformed HTTP response")

// response reads one HTTP/1.1 response from br. It returns the status code,
// the body (in buf, reused) and whether the server will close the
// connection.
func response(br *bufio.Reader, buf []byte) (code int, body []byte, closing bool, err error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return 0, buf, false, err
	}
	// "HTTP/1.1 200 OK\r\n"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
		return 0, buf, false, fmt.Errorf("%w: status line %q", errProtocol, line)
	}
	code, err = strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, buf, false, fmt.Errorf("%w: status line %q", errProtocol, line)
	}
	length, chunked := -1, false
	for {
		h, err := br.ReadSlice('\n')
		if err != nil {
			return code, buf, false, err
		}
		h = bytes.TrimRight(h, "\r\n")
		if len(h) == 0 {
			break
		}
		k, v, ok := bytes.Cut(h, []byte(":"))
		if !ok {
			return code, buf, false, fmt.Errorf("%w: header %q", errProtocol, h)
		}
		v = bytes.TrimSpace(v)
		switch {
		case bytes.EqualFold(k, []byte("Content-Length")):
			length, err = strconv.Atoi(string(v))
			if err != nil || length < 0 {
				return code, buf, false, fmt.Errorf("%w: Content-Length %q", errProtocol, v)
			}
		case bytes.EqualFold(k, []byte("Transfer-Encoding")):
			chunked = bytes.Contains(bytes.ToLower(v), []byte("chunked"))
		case bytes.EqualFold(k, []byte("Connection")):
			closing = bytes.EqualFold(v, []byte("close"))
		}
	}
	body = buf[:0]
	switch {
	case chunked:
		for {
			l, err := br.ReadSlice('\n')
			if err != nil {
				return code, body, closing, err
			}
			l, _, _ = bytes.Cut(bytes.TrimRight(l, "\r\n"), []byte(";"))
			n, err := strconv.ParseInt(string(l), 16, 32)
			if err != nil || n < 0 {
				return code, body, closing, fmt.Errorf("%w: chunk size %q", errProtocol, l)
			}
			if n == 0 { // trailers end with an empty line
				for {
					t, err := br.ReadSlice('\n')
					if err != nil {
						return code, body, closing, err
					}
					if len(bytes.TrimRight(t, "\r\n")) == 0 {
						return code, body, closing, nil
					}
				}
			}
			body = slices.Grow(body, int(n))
			start := len(body)
			body = body[:start+int(n)]
			if _, err := io.ReadFull(br, body[start:]); err != nil {
				return code, body, closing, err
			}
			if _, err := br.Discard(2); err != nil { // CRLF after the chunk
				return code, body, closing, err
			}
		}
	case length >= 0:
		body = slices.Grow(body, length)[:length]
		_, err = io.ReadFull(br, body)
		return code, body, closing, err
	default: // body until close
		var b bytes.Buffer
		_, err = b.ReadFrom(br)
		return code, b.Bytes(), true, err
	}
}

// worker state and results.
type worker struct {
	lat    []int64 // nanoseconds, measured phase only
	errs   int64
	bytes  int64
	sample string // first error, for the report
}

type config struct {
	targets []target
	status  int
	expect  []byte
	timeout time.Duration
	max     int
	rate    float64 // requests/s over all clients; 0: closed loop
	conns   int
	cursor  atomic.Uint64 // next target, shared by the clients
}

// run loops until stop is set: warm-up requests (before measureFrom) are
// not recorded; requests completing after measureTo are not either.
func (w *worker) run(cfg *config, id int, stop *atomic.Bool, measureFrom, measureTo *atomic.Int64) {
	var (
		conn net.Conn
		br   *bufio.Reader
		buf  = make([]byte, 0, 16<<10)
	)
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	fail := func(err error) {
		if w.sample == "" {
			w.sample = err.Error()
		}
		if conn != nil {
			conn.Close()
			conn = nil
		}
	}
	var interval time.Duration
	next := time.Now()
	if cfg.rate > 0 { // clients take turns: client id starts id/N of an interval late
		interval = time.Duration(float64(cfg.conns) / cfg.rate * float64(time.Second))
		next = next.Add(interval * time.Duration(id) / time.Duration(cfg.conns))
	}
	for !stop.Load() && len(w.lat) < cfg.max {
		// One shared cursor: every URL is asked once per pass over the
		// list, whatever the number of clients (per-client cursors would
		// make clients follow each other through the list, so a server
		// cache would answer all but the first).
		t := &cfg.targets[(cfg.cursor.Add(1)-1)%uint64(len(cfg.targets))]
		t0 := time.Now()
		if interval > 0 {
			// Open loop: latency counts from the scheduled send time when
			// the client is behind schedule (the server made it late), from
			// the actual send when it slept (its own timer lateness is not
			// the server's).
			if d := next.Sub(t0); d > 0 {
				time.Sleep(d)
				t0 = time.Now()
			} else {
				t0 = next
			}
			next = next.Add(interval)
		}
		// A request belongs to the measured window when it is sent (not
		// scheduled) inside it and answered before the window ends.
		from, to := measureFrom.Load(), measureTo.Load()
		measured := from != 0 && time.Now().UnixNano() >= from
		var err error
		if conn == nil {
			conn, err = net.DialTimeout("tcp", t.addr, cfg.timeout)
			if err != nil {
				conn = nil
				if measured {
					w.errs++
				}
				fail(err)
				time.Sleep(10 * time.Millisecond)
				continue
			}
			if br == nil {
				br = bufio.NewReaderSize(conn, 16<<10)
			} else {
				br.Reset(conn)
			}
		}
		if err = conn.SetDeadline(t0.Add(cfg.timeout)); err == nil {
			_, err = conn.Write(t.req)
		}
		var (
			code    int
			body    []byte
			closing bool
		)
		if err == nil {
			code, body, closing, err = response(br, buf)
			if cap(body) > cap(buf) && cap(body) <= 1<<20 {
				buf = body[:0]
			}
		}
		if err == nil && code != cfg.status {
			err = fmt.Errorf("status %d, want %d: %.120q", code, cfg.status, body)
		}
		if err == nil && len(cfg.expect) > 0 && !bytes.Contains(body, cfg.expect) {
			err = fmt.Errorf("body lacks %q: %.120q", cfg.expect, body)
		}
		t1 := time.Now().UnixNano()
		if measured && (to == 0 || t1 <= to) {
			if err != nil {
				w.errs++
			} else {
				w.lat = append(w.lat, t1-t0.UnixNano())
				w.bytes = int64(len(body))
			}
		}
		if err != nil {
			fail(err)
			continue
		}
		if closing {
			conn.Close()
			conn = nil
		}
	}
}

type urlList []string

func (u *urlList) String() string { return strings.Join(*u, ",") }
func (u *urlList) Set(s string) error {
	*u = append(*u, s)
	return nil
}

func main() {
	os.Exit(mainErr(os.Args[1:], os.Stdout, os.Stderr))
}

func mainErr(args []string, stdout, stderr io.Writer) int {
	fl := flag.NewFlagSet("httpload", flag.ContinueOnError)
	fl.SetOutput(stderr)
	var urls urlList
	fl.Var(&urls, "url", "URL to GET (repeatable; positional arguments are URLs too); the clients take them in turn from one shared cursor")
	var (
		conns   = fl.Int("c", 8, "concurrent clients, one keep-alive connection each")
		dur     = fl.Duration("d", 10*time.Second, "measured duration")
		warm    = fl.Duration("warmup", time.Second, "unmeasured warm-up before the measured duration")
		status  = fl.Int("status", 200, "status every response must have")
		expect  = fl.String("expect", "", "substring every response body must contain")
		timeout = fl.Duration("timeout", 10*time.Second, "per-request timeout (dial, write, read)")
		name    = fl.String("name", "load", "label for the output lines")
		max     = fl.Int("max", 20_000_000, "stop after this many measured requests in total")
		rate    = fl.Float64("rate", 0, "open loop: send this many requests/s in total, spread over the clients (latency then counts from each request's scheduled time when the server falls behind); 0: closed loop, as fast as answers come")
		list    = fl.String("urls", "", "file with more URLs, one a line (blank lines and # comments ignored)")
	)
	if err := fl.Parse(args); err != nil {
		return 2
	}
	urls = append(urls, fl.Args()...)
	if *list != "" {
		b, err := os.ReadFile(*list)
		if err != nil {
			fmt.Fprintln(stderr, "httpload:", err)
			return 2
		}
		for _, l := range strings.Split(string(b), "\n") {
			if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
				urls = append(urls, l)
			}
		}
	}
	if len(urls) == 0 || *conns < 1 || *dur <= 0 || *warm < 0 || *timeout <= 0 || *max < 1 || *rate < 0 {
		fmt.Fprintln(stderr, "httpload: need at least one URL; -c, -d, -timeout, -max must be positive, -rate not negative")
		return 2
	}
	cfg := &config{status: *status, expect: []byte(*expect), timeout: *timeout, max: max2(*max / *conns, 1), rate: *rate, conns: *conns}
	for _, u := range urls {
		t, err := parseTarget(u)
		if err != nil {
			fmt.Fprintln(stderr, "httpload:", err)
			return 2
		}
		cfg.targets = append(cfg.targets, t)
	}

	var (
		stop          atomic.Bool
		from, to      atomic.Int64
		wg            sync.WaitGroup
		workers       = make([]worker, *conns)
		expectSamples = int(min(float64(*max), 200_000*dur.Seconds()) / float64(*conns))
	)
	for i := range workers {
		workers[i].lat = make([]int64, 0, min(expectSamples, cfg.max))
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			workers[i].run(cfg, i, &stop, &from, &to)
		}(i)
	}
	time.Sleep(*warm)
	start := time.Now()
	from.Store(start.UnixNano())
	time.Sleep(*dur)
	end := time.Now()
	to.Store(end.UnixNano())
	stop.Store(true)
	wg.Wait()
	elapsed := end.Sub(start)

	var (
		lat   []int64
		errs  int64
		size  int64
		first string
	)
	for i := range workers {
		lat = append(lat, workers[i].lat...)
		errs += workers[i].errs
		if workers[i].bytes > 0 {
			size = workers[i].bytes
		}
		if first == "" {
			first = workers[i].sample
		}
	}
	if len(lat) == 0 {
		fmt.Fprintf(stderr, "httpload: %s: no successful request (%d errors; first: %s)\n", *name, errs, first)
		fmt.Fprintf(stdout, "httpload name=%s rps=0 p50_us=0 p90_us=0 p99_us=0 max_us=0 requests=0 errors=%d conns=%d seconds=%.2f bytes=0\n",
			*name, errs, *conns, elapsed.Seconds())
		return 1
	}
	slices.Sort(lat)
	pct := func(p float64) float64 {
		i := int(float64(len(lat))*p+0.5) - 1
		return float64(lat[min(max2(i, 0), len(lat)-1)]) / 1e3
	}
	rps := float64(len(lat)) / elapsed.Seconds()
	fmt.Fprintf(stdout, "httpload name=%s rps=%.1f p50_us=%.0f p90_us=%.0f p99_us=%.0f max_us=%.0f requests=%d errors=%d conns=%d seconds=%.2f bytes=%d offered=%g\n",
		*name, rps, pct(0.50), pct(0.90), pct(0.99), float64(lat[len(lat)-1])/1e3, len(lat), errs, *conns, elapsed.Seconds(), size, *rate)
	mode := "closed loop"
	if *rate > 0 {
		mode = fmt.Sprintf("offered %g req/s", *rate)
	}
	fmt.Fprintf(stdout, "%s: %.0f req/s, p50 %.2f ms, p99 %.2f ms, max %.2f ms, %d errors (%d conns, %s, %.1f s, %d B/resp)\n",
		*name, rps, pct(0.50)/1e3, pct(0.99)/1e3, float64(lat[len(lat)-1])/1e6, errs, *conns, mode, elapsed.Seconds(), size)
	if errs > 0 && first != "" {
		fmt.Fprintf(stderr, "httpload: %s: first error: %s\n", *name, first)
	}
	return 0
}

func max2(a, b int) int {
	if a > b {
		return a
	}
	return b
}
