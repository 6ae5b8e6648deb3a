package ignition

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/metalboot/metalboot/profile"
	"github.com/metalboot/metalboot/profile/demo"
)

// FuzzHandler throws query strings at /ignition over the demo inventory
// and the seed lab: never a panic, never a 5xx (both inventories pass
// Check, so every failure is the request's), and every 200 is a config
// Ignition accepts at the version Butane emitted.
func FuzzHandler(f *testing.F) {
	for _, s := range []string{
		"mac=" + smpcMAC, "mac=" + smpcMAC + "&os=installed", "mac=" + mpMAC + "&os=installed&hostname=@x",
		"uuid=&mac=52-54-00-12-34-56", "mac=bad", "mac=%00", "mac=" + mpMAC + "&mac=" + smpcMAC, "", "foo=bar",
		"mac=0023.322f.403c&uuid=4C4C4544-0000-1000-8000-000000000001", "mac=" + smpcMAC + "&hostname=-",
		"mac=" + smpcMAC + "&os=installed&hostname=a:b", "%zz", "mac=" + smpcMAC + "&ünï=1", strings.Repeat("a=b&", 20),
	} {
		f.Add(s)
	}
	st, err := profile.OpenFS(demo.FS(), Check, nil)
	if err != nil {
		f.Fatal(err)
	}
	handlers := []*Handler{{Resolver: &profile.Resolver{Store: st, BaseURL: "http://172.22.10.2:8080"}}}
	if _, err := os.Stat(seedLab); err == nil {
		st, err := profile.OpenFS(os.DirFS(seedLab), Check, nil)
		if err != nil {
			f.Fatal(err)
		}
		handlers = append(handlers, &Handler{Resolver: &profile.Resolver{Store: st, BaseURL: "http://deploy.lab:8080"}})
	}
	f.Fuzz(func(t *testing.T, query string) {
		for _, h := range handlers {
			r := httptest.NewRequest(http.MethodGet, "/ignition", nil)
			r.URL.RawQuery = query
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, r)
			switch rec.Code {
			case http.StatusOK:
				v, _, err := Validate(rec.Body.Bytes())
				if err != nil || v != "3.3.0" {
					t.Fatalf("%q: served %s config: %v\n%s", query, v, err, rec.Body)
				}
			case http.StatusBadRequest, http.StatusNotFound:
				if strings.Count(rec.Body.String(), "\n") != 1 {
					t.Fatalf("%q: %d without a one-line reason: %q", query, rec.Code, rec.Body)
				}
			default:
				t.Fatalf("%q: status %d: %s", query, rec.Code, rec.Body)
			}
		}
	})
}

// FuzzTemplate compiles and renders arbitrary templates with an arbitrary
// metadata value: never a panic; every failure is a *TemplateError naming
// the file; every success is a config Ignition validates at the version
// it reports.
func FuzzTemplate(f *testing.F) {
	for _, s := range []string{
		"variant: flatcar\nversion: 1.0.0\npasswd:\n  users:\n    - name: {{.v}}\n",
		"variant: fcos\nversion: 1.5.0\nstorage:\n  files:\n    - path: /etc/x\n      contents:\n        inline: |\n          {{.v}} {{.request.query.mac}}\n",
		`{"ignition":{"version":"3.2.0"},"passwd":{"users":[{"name":"{{.v}}"}]}}`,
		"{{.missing}}", "{{if}}", "{{range .Labels}}{{.}}{{end}}", "variant: flatcar\nversion: 9.9.9\n", "",
		"{{define \"a\"}}{{template \"a\"}}{{end}}{{template \"a\"}}",
		"variant: openshift\nversion: 4.20.0\nmetadata:\n  name: x\n  labels:\n    machineconfiguration.openshift.io/role: worker\n",
	} {
		f.Add(s, "debug")
	}
	f.Fuzz(func(t *testing.T, src, value string) {
		if len(src) > 4096 {
			return
		}
		data := map[string]any{
			"v":       value,
			"request": map[string]any{"query": map[string]string{"mac": smpcMAC}, "raw_query": "mac=" + smpcMAC},
			"Labels":  map[string]string{"mac": smpcMAC},
		}
		tp, err := Compile("f.tmpl", []byte(src))
		if err == nil {
			var out Output
			out, err = tp.Render(data)
			if err == nil {
				v, _, verr := Validate(out.JSON)
				if verr != nil || v != out.Version {
					t.Fatalf("served config does not validate as %s: %v\n%s", out.Version, verr, out.JSON)
				}
				return
			}
		}
		var te *TemplateError
		if !errors.As(err, &te) || te.File != "ignition/f.tmpl" || !errors.Is(err, ErrTemplate) {
			t.Fatalf("error is not a *TemplateError for the file: %T %v", err, err)
		}
		if strings.Contains(te.Short(), "\n") {
			t.Fatalf("short reason spans lines: %q", te.Short())
		}
	})
}
