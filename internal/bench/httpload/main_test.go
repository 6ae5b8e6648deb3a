package main

import (
	"bufio"
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fields parses the machine-readable line.
func fields(t *testing.T, out string) map[string]string {
	t.Helper()
	line, _, _ := strings.Cut(out, "\n")
	require.True(t, strings.HasPrefix(line, "httpload "), "first line: %q", line)
	m := map[string]string{}
	for _, f := range strings.Fields(line)[1:] {
		k, v, ok := strings.Cut(f, "=")
		require.True(t, ok, f)
		m[k] = v
	}
	return m
}

func num(t *testing.T, m map[string]string, k string) float64 {
	t.Helper()
	v, err := strconv.ParseFloat(m[k], 64)
	require.NoError(t, err, k)
	return v
}

func TestLoadCountsOnlyGoodAnswers(t *testing.T) {
	var hits [3]int
	var mu = make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu <- struct{}{}
		switch r.URL.Query().Get("k") {
		case "small":
			hits[0]++
			_, _ = w.Write([]byte("menuentry ignition?mac=x\n"))
		case "big": // larger than net/http's buffer: sent chunked
			hits[1]++
			_, _ = w.Write(bytes.Repeat([]byte("ignition? "), 1000))
		default:
			hits[2]++
			http.NotFound(w, r)
		}
		<-mu
	}))
	defer srv.Close()

	var out, errOut bytes.Buffer
	code := mainErr([]string{"-c", "2", "-d", "200ms", "-warmup", "50ms", "-name", "ok", "-expect", "ignition?",
		srv.URL + "/grub?k=small", "-url", srv.URL + "/grub?k=big"}, &out, &errOut)
	// flag parsing stops at the first positional argument: -url after it is a URL too
	require.Equal(t, 2, code, "a non-URL positional argument must be refused: %s", errOut.String())

	out.Reset()
	errOut.Reset()
	code = mainErr([]string{"-c", "2", "-d", "200ms", "-warmup", "50ms", "-name", "ok", "-expect", "ignition?",
		"-url", srv.URL + "/grub?k=big", srv.URL + "/grub?k=small"}, &out, &errOut)
	require.Equal(t, 0, code, errOut.String())
	m := fields(t, out.String())
	assert.Equal(t, "ok", m["name"])
	assert.Equal(t, "0", m["errors"])
	assert.Equal(t, "2", m["conns"])
	assert.Greater(t, num(t, m, "requests"), 0.0)
	assert.Greater(t, num(t, m, "rps"), 0.0)
	assert.LessOrEqual(t, num(t, m, "p50_us"), num(t, m, "p99_us"))
	assert.LessOrEqual(t, num(t, m, "p99_us"), num(t, m, "max_us"))
	assert.Positive(t, hits[0])
	assert.Positive(t, hits[1], "the chunked response was requested")
	assert.Contains(t, out.String(), "\nok: ")

	out.Reset()
	errOut.Reset()
	code = mainErr([]string{"-c", "1", "-d", "100ms", "-warmup", "0", "-name", "bad", srv.URL + "/grub?k=none"}, &out, &errOut)
	assert.Equal(t, 1, code)
	m = fields(t, out.String())
	assert.Equal(t, "0", m["requests"])
	assert.Greater(t, num(t, m, "errors"), 0.0)
	assert.Contains(t, errOut.String(), "status 404")
}

func TestWrongBodyIsAnError(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("hello"))
	}))
	defer srv.Close()
	var out, errOut bytes.Buffer
	code := mainErr([]string{"-c", "1", "-d", "100ms", "-warmup", "0", "-expect", "ignition?", srv.URL}, &out, &errOut)
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut.String(), "body lacks")
}

func TestBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"-c", "0", "http://127.0.0.1:1/"},
		{"https://127.0.0.1:1/"},
		{"-d", "-1s", "http://127.0.0.1:1/"},
	} {
		var out, errOut bytes.Buffer
		assert.Equal(t, 2, mainErr(args, &out, &errOut), "%q", args)
	}
}

func TestResponseParser(t *testing.T) {
	for name, tc := range map[string]struct {
		in      string
		code    int
		body    string
		closing bool
		bad     bool
	}{
		"length":  {in: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", code: 200, body: "hello"},
		"chunked": {in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhel\r\n2;x=y\r\nlo\r\n0\r\nT: v\r\n\r\n", code: 200, body: "hello"},
		"close":   {in: "HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 2\r\n\r\nno", code: 404, body: "no", closing: true},
		"eof":     {in: "HTTP/1.0 200 OK\r\n\r\nall of it", code: 200, body: "all of it", closing: true},
		"garbage": {in: "SSH-2.0-OpenSSH\r\n\r\n", bad: true},
		"badlen":  {in: "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", bad: true},
		"short":   {in: "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc", bad: true},
	} {
		t.Run(name, func(t *testing.T) {
			code, body, closing, err := response(bufio.NewReader(strings.NewReader(tc.in)), nil)
			if tc.bad {
				assert.Error(t, err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.code, code)
			assert.Equal(t, tc.body, string(body))
			assert.Equal(t, tc.closing, closing)
		})
	}
}

func TestURLFile(t *testing.T) {
	seen := make(chan string, 1000)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case seen <- r.URL.RawQuery:
		default:
		}
		_, _ = w.Write([]byte("ok"))
	}))
	defer srv.Close()
	f := t.TempDir() + "/urls"
	require.NoError(t, os.WriteFile(f, []byte("# comment\n"+srv.URL+"/?a\n\n"+srv.URL+"/?b\n"), 0o644))
	var out, errOut bytes.Buffer
	require.Equal(t, 0, mainErr([]string{"-c", "1", "-d", "100ms", "-warmup", "0", "-urls", f}, &out, &errOut), errOut.String())
	got := map[string]bool{}
	for len(seen) > 0 {
		got[<-seen] = true
	}
	assert.Equal(t, map[string]bool{"a": true, "b": true}, got)
	var o2, e2 bytes.Buffer
	assert.Equal(t, 2, mainErr([]string{"-urls", f + ".missing"}, &o2, &e2))
}

func TestOpenLoopRate(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("ok"))
	}))
	defer srv.Close()
	var out, errOut bytes.Buffer
	require.Equal(t, 0, mainErr([]string{"-c", "2", "-d", "1s", "-warmup", "0", "-rate", "50", srv.URL}, &out, &errOut), errOut.String())
	m := fields(t, out.String())
	assert.Equal(t, "50", m["offered"])
	// 50/s for 1 s: the schedule, not the server's speed, bounds the count
	// (a closed loop would make thousands).
	assert.Positive(t, num(t, m, "requests"))
	assert.LessOrEqual(t, num(t, m, "requests"), 52.0)
	assert.Contains(t, out.String(), "offered 50 req/s")
}

// Every URL is asked once per pass over the list, however many clients.
func TestSharedCursor(t *testing.T) {
	var mu sync.Mutex
	counts := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		counts[r.URL.RawQuery]++
		mu.Unlock()
		_, _ = w.Write([]byte("ok"))
	}))
	defer srv.Close()
	f := t.TempDir() + "/urls"
	var list strings.Builder
	for i := range 1000 {
		fmt.Fprintf(&list, "%s/?%d\n", srv.URL, i)
	}
	require.NoError(t, os.WriteFile(f, []byte(list.String()), 0o644))
	var out, errOut bytes.Buffer
	// -max stops each client after 100 measured requests: about 400 in all,
	// fewer than the list, so no URL may be asked twice.
	require.Equal(t, 0, mainErr([]string{"-c", "4", "-d", "1s", "-warmup", "0", "-max", "400", "-urls", f}, &out, &errOut), errOut.String())
	mu.Lock()
	defer mu.Unlock()
	assert.NotEmpty(t, counts)
	for q, n := range counts {
		assert.Equal(t, 1, n, q)
	}
}
