package ignition

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// BenchmarkHandler measures GET /ignition over the demo inventory, with the
// conversion cache (default) and without it (every request translates
// with Butane and validates).
func BenchmarkHandler(b *testing.B) {
	for _, bc := range []struct {
		name  string
		cache int
		query string
	}{
		{"installer/cached", 0, "mac=" + smpcMAC},
		{"installer/uncached", -1, "mac=" + smpcMAC},
		{"installed/cached", 0, "mac=" + smpcMAC + "&os=installed"},
		{"installed/uncached", -1, "mac=" + smpcMAC + "&os=installed"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			h := demoHandler(b)
			h.CacheSize = bc.cache
			target := "/ignition?" + bc.query
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					rec := httptest.NewRecorder()
					h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, target, nil))
					if rec.Code != http.StatusOK {
						b.Fatalf("%d %s", rec.Code, rec.Body)
					}
				}
			})
		})
	}
}

// BenchmarkInstallerJSON measures generating and validating an installer
// config in Go.
func BenchmarkInstallerJSON(b *testing.B) {
	in := flatcarInstaller()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := in.JSON(); err != nil {
			b.Fatal(err)
		}
	}
}
