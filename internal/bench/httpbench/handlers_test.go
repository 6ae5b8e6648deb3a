// Package httpbench holds in-process benchmarks of the /grub, /ipxe and /ignition
// handlers over the seed lab, wired as examples/labserver wires them
// (profile.Resolver + grubcfg.Handler, ignition.Handler with its load-time
// Check), without the network. They are for profiling what
// internal/bench/http.sh measures end to end:
//
//	go test -run '^$' -bench . -benchmem -cpuprofile /tmp/http.cpu ./internal/bench/httpbench
//	go tool pprof -top -cum httpbench.test /tmp/http.cpu  (go test leaves the test binary in .)
package httpbench

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/metalboot/metalboot/grubcfg"
	"github.com/metalboot/metalboot/grubcfg/ipxe"
	"github.com/metalboot/metalboot/ignition"
	"github.com/metalboot/metalboot/internal/fixtures"
	"github.com/metalboot/metalboot/profile"
)

// handlers returns /grub and /ignition over the seed lab.
func handlers(tb testing.TB) (grub, ign http.Handler) {
	tb.Helper()
	checker := &ignition.Handler{}
	store, err := profile.OpenFS(fixtures.SeedLab(), checker.Check, nil)
	require.NoError(tb, err)
	res := &profile.Resolver{Store: store, BaseURL: "http://deploy.lab:8080"}
	ih := &ignition.Handler{Resolver: res}
	require.NoError(tb, ih.Check(store.Inventory()))
	return &grubcfg.Handler{Resolver: res}, ih
}

// serve runs one request and checks the answer.
func serve(tb testing.TB, h http.Handler, target, want string) {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, target, nil))
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), want) {
		tb.Fatalf("%s: %d %.200q", target, w.Code, w.Body.String())
	}
}

// The answers the benchmarks measure are the ones http.sh checks.
func TestAnswers(t *testing.T) {
	grub, ign := handlers(t)
	serve(t, grub, "/grub?mac=00:23:32:2f:40:3c", "ignition?mac=00:23:32:2f:40:3c")
	serve(t, grub, "/grub?mac=52:54:00:12:34:56", "mac=52-54-00-12-34-56")
	serve(t, ign, "/ignition?mac=00:30:48:fb:e2:44", "/opt/installer")
	serve(t, ign, "/ignition?mac=52:54:00:00:01:02", "/opt/installer")
}

func BenchmarkGrub(b *testing.B) {
	grub, _ := handlers(b)
	for _, tc := range []struct{ name, target string }{
		{"mp", "/grub?mac=00:23:32:2f:40:3c"},
		{"default", "/grub?mac=52:54:00:12:34:56"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				serve(b, grub, tc.target, "coreos.config.url=")
			}
		})
	}
}

func BenchmarkIPXE(b *testing.B) {
	checker := &ignition.Handler{}
	store, err := profile.OpenFS(fixtures.SeedLab(), checker.Check, nil)
	require.NoError(b, err)
	h := &ipxe.Handler{Resolver: &profile.Resolver{Store: store, BaseURL: "http://deploy.lab:8080"}}
	for _, tc := range []struct{ name, target string }{
		{"mp", "/ipxe?mac=00:23:32:2f:40:3c"},
		{"default", "/ipxe?mac=52:54:00:12:34:56"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				serve(b, h, tc.target, "coreos.config.url=")
			}
		})
	}
}

func BenchmarkIgnition(b *testing.B) {
	_, ign := handlers(b)
	b.Run("smpc", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			serve(b, ign, "/ignition?mac=00:30:48:fb:e2:44", "/opt/installer")
		}
	})
	// 4096 machines of the default group round-robin: each rendered config
	// differs (the MAC is in it), more than the conversion cache holds.
	targets := make([]string, 4096)
	for i := range targets {
		targets[i] = fmt.Sprintf("/ignition?mac=52:54:00:00:%02x:%02x", i/256, i%256)
	}
	b.Run("4096-macs", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			serve(b, ign, targets[i%len(targets)], "/opt/installer")
			i++
		}
	})
}
