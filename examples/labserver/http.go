package main

import (
	"context"
	"errors"
	"io/fs"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/metalboot/metalboot/grubcfg"
	"github.com/metalboot/metalboot/internal/hwaddr"
	"github.com/metalboot/metalboot/profile"
)

// HTTP server limits: slow or hostile clients cannot hold connections or
// memory for long; large assets still have minutes to download.
const (
	readHeaderTimeout = 10 * time.Second
	readTimeout       = 30 * time.Second
	writeTimeout      = 15 * time.Minute
	idleTimeout       = 30 * time.Second
	maxHeaderBytes    = 16 << 10
)

func (l *lab) startHTTP(ctx context.Context) error {
	ln, err := net.Listen("tcp", l.s.HTTP)
	if err != nil {
		return err
	}
	l.setAddr("http", ln.Addr().String())
	if l.s.baseDerived {
		// With port 0 the real port is known only now.
		l.s.BaseURL.Host = ln.Addr().String()
		l.resolver.BaseURL = l.s.BaseURL.String()
	}
	srv := &http.Server{
		Handler:           harden(l.routes()),
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          nil,
	}
	l.serve("http", func() error { return srv.Serve(grubcfg.Listener(ln)) })
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	return nil
}

// statusRecorder captures the response code for metrics.
type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.code == 0 {
		r.code = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

// instrument counts requests per handler and status code.
func (l *lab) instrument(name string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w}
		h.ServeHTTP(rec, r)
		if rec.code == 0 {
			rec.code = http.StatusOK
		}
		l.metrics.requests.WithLabelValues(name, strconv.Itoa(rec.code)).Inc()
		if rec.code >= 500 {
			l.metrics.errors.WithLabelValues(name).Inc()
		}
	})
}

func remoteIP(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// maxURL bounds the request target; longer ones are 414.
const maxURL = 4096

// harden answers requests whose path tries to climb out of a tree ("..")
// or carries a NUL with 400 before any handler or ServeMux's cleaning
// redirect sees them.
func harden(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw := r.URL.EscapedPath()
		if len(r.RequestURI) > maxURL {
			profile.Error(w, http.StatusRequestURITooLong, "request URI too long")
			return
		}
		if strings.Contains(r.URL.Path, "\x00") || strings.Contains(strings.ToLower(raw), "%00") {
			profile.Error(w, http.StatusBadRequest, "bad path: NUL")
			return
		}
		for _, seg := range strings.Split(r.URL.Path, "/") {
			if seg == ".." {
				profile.Error(w, http.StatusBadRequest, "bad path: '..'")
				return
			}
		}
		h.ServeHTTP(w, r)
	})
}

func (l *lab) routes() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /grub", l.instrument("grub", l.grubHandler()))
	mux.Handle("GET /grub.cfg", l.instrument("grub.cfg", l.firstStageHTTP()))
	mux.Handle("GET /grub/", l.instrument("grub-files", grubcfg.CloseAfterResponse(l.tftpOverHTTP())))
	mux.Handle("GET /ignition", l.instrument("ignition", l.ignition))
	mux.Handle("GET /assets/", l.instrument("assets", l.assetsHandler()))
	mux.Handle("GET /machines", l.instrument("machines", l.timeline))
	mux.Handle("POST /machines/{mac}/reinstall", l.instrument("reinstall", http.HandlerFunc(l.reinstall)))
	mux.Handle("GET /metrics", l.metrics.handler())
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/machines", http.StatusFound)
	})
	return mux
}

// assetsHandler serves the assets directory (range requests included) from
// an os.Root, so neither "..", nor an absolute path, nor a symbolic link can
// leave it. Without an assets directory every asset is 404.
func (l *lab) assetsHandler() http.Handler {
	var files http.Handler = http.NotFoundHandler()
	if l.s.Assets != "" {
		root, err := os.OpenRoot(l.s.Assets)
		if err == nil {
			files = http.StripPrefix("/assets", http.FileServerFS(confined{root.FS()}))
		} else {
			l.log.Error("assets", "err", err)
		}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w}
		grubcfg.CloseAfterResponse(files).ServeHTTP(rec, r)
		if rec.code == http.StatusOK || rec.code == http.StatusPartialContent {
			ip := remoteIP(r)
			l.metrics.stages.WithLabelValues(stageAsset).Inc()
			l.timeline.recordIP(ip, l.timeline.assetStage(ip, r.URL.Path), r.URL.Path)
		}
	})
}

// reinstall forgets that a machine is installed, so its next network boot
// installs again. Only callers from admin networks may ask.
func (l *lab) reinstall(w http.ResponseWriter, r *http.Request) {
	ip := remoteIP(r)
	allowed := false
	for _, p := range l.s.AdminAllow {
		if p.Contains(ip) {
			allowed = true
		}
	}
	if !allowed {
		profile.Error(w, http.StatusForbidden, "reinstall: "+ip.String()+" is not in admin_allow")
		return
	}
	m, err := hwaddr.Parse(r.PathValue("mac"))
	if err != nil {
		profile.Error(w, http.StatusBadRequest, err.Error())
		return
	}
	if _, err := l.state.set(m, false, time.Now()); err != nil {
		profile.Error(w, http.StatusInternalServerError, "saving state: "+err.Error())
		return
	}
	l.timeline.setInstalled(m, false)
	l.event(m, netip.Addr{}, "reinstall-requested", "by "+ip.String())
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte(m.String() + " will be reinstalled on its next network boot\n"))
}

// confined reports every failure to open a file of an os.Root tree other
// than "does not exist" (a symbolic link or path that leaves the root, a
// device…) as permission denied, so the file server answers 403, not 500.
type confined struct{ fs.FS }

func (c confined) Open(name string) (fs.File, error) {
	f, err := c.FS.Open(name)
	if err != nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, fs.ErrPermission) {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrPermission}
	}
	return f, err
}
