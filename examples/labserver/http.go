package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/metalboot/metalboot/dhcpsrv/hwaddr"
	"github.com/metalboot/metalboot/grubcfg"
	"github.com/metalboot/metalboot/internal/files"
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

// statusRecorder captures the response code for metrics, and the start of
// an error response's body (the reason) for the timeline.
type statusRecorder struct {
	http.ResponseWriter
	code   int
	reason []byte
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
	if r.code >= 400 && len(r.reason) < maxReason {
		r.reason = append(r.reason, b[:min(len(b), maxReason-len(r.reason))]...)
	}
	return r.ResponseWriter.Write(b)
}

// maxReason bounds the error text kept for the timeline.
const maxReason = 300

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
		if rec.code >= 400 && recordsFailures(name) {
			l.recordFailure(r, name, rec)
		}
	})
}

// recordFailure puts a failed /grub, /ipxe or /ignition answer on the timeline of
// the machine the request names (a malformed MAC names none), with the
// reason the machine was given.
func (l *lab) recordFailure(r *http.Request, name string, rec *statusRecorder) {
	attrs, err := profile.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return
	}
	mac, err := hwaddr.Parse(attrs[profile.KeyMAC])
	if err != nil {
		return
	}
	reason := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(string(rec.reason)), "echo"))
	reason = strings.Trim(reason, "'")
	l.event(mac, remoteIP(r), stageFailed, fmt.Sprintf("/%s answered %d: %s", name, rec.code, reason))
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
	mux.Handle("GET /boot.ipxe", l.instrument("boot.ipxe", l.bootIPXEHandler()))
	mux.Handle("GET /boot.ipxe.0", l.instrument("boot.ipxe", l.bootIPXEHandler()))
	mux.Handle("GET /ipxe", l.instrument("ipxe", l.ipxeHandler()))
	mux.Handle("GET /generic", l.instrument("generic", l.genericHandler()))
	mux.Handle("GET /metadata", l.instrument("metadata", l.metadataHandler()))
	mux.Handle("GET /assets/", l.instrument("assets", l.assetsHandler()))
	mux.Handle("GET /machines", l.instrument("machines", l.timeline))
	mux.Handle("POST /machines/{mac}/{action}", l.instrument("machine-action", http.HandlerFunc(l.machineAction)))
	mux.Handle("GET /metrics", l.metrics.handler())
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if err := l.storeHealth(); err != nil { // etcd.go: lost the shared store
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = fmt.Fprintf(w, "%v\n", err)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/machines", http.StatusFound)
	})
	return mux
}

// assetsHandler serves the assets directory (range requests included):
// regular files only, request paths confined to the tree, and the
// operator's own symbolic links followed wherever they point (ownerLinkFS;
// matchbox users link image directories in). Without an assets directory
// every asset is 404.
func (l *lab) assetsHandler() http.Handler {
	var files http.Handler = http.NotFoundHandler()
	if l.s.Assets != "" {
		tree, err := newOwnerLinkFS(l.s.Assets)
		if err == nil {
			files = http.StripPrefix("/assets", http.FileServerFS(confined{tree, l.log, "assets"}))
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

// actionHeader must name the action on every state-changing request
// (X-Metalboot-Action: reinstall). A browser sends a custom header across
// origins only after a CORS preflight, which labserver never grants, so a
// web page an admin visits cannot forge the request; crossOrigin also
// refuses requests a browser marks as cross-origin (Sec-Fetch-Site, Origin).
const actionHeader = "X-Metalboot-Action"

var crossOrigin = http.NewCrossOriginProtection()

// fromAdmin reports whether r comes from admin_allow or from the server
// host itself: a TCP connection whose source address is the address it
// reached (labserver -reinstall on a server that listens only on the lab
// address). Over TCP that source cannot be forged from the network: the
// handshake's answer would never reach the forger.
func (l *lab) fromAdmin(r *http.Request) bool {
	ip := remoteIP(r)
	if l.isAdmin(ip) {
		return true
	}
	la, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	if !ok {
		return false
	}
	local, err := netip.ParseAddrPort(la.String())
	return err == nil && ip.IsValid() && local.Addr().Unmap() == ip
}

// machineAction serves POST /machines/{mac}/reinstall (forget that the
// machine is installed: its next network boot installs again) and POST
// /machines/{mac}/installed (mark it installed: its next network boot
// boots the local disk). Reinstall is for admin_allow only; installed also
// for the machine itself, calling from the address this server's DHCP
// leased to that MAC (the installed system's first boot does, see the demo
// inventory's installed template). Answers: 200, 400 (bad MAC), 403 (not
// allowed, cross-origin, or without the action header), 404 (unknown
// action), 500 (the state could not be saved). Admin means admin_allow or
// the server host itself (fromAdmin).
func (l *lab) machineAction(w http.ResponseWriter, r *http.Request) {
	ip := remoteIP(r)
	action := r.PathValue("action")
	if action != "reinstall" && action != "installed" {
		profile.Error(w, http.StatusNotFound, "unknown action "+strconv.Quote(action)+": want reinstall or installed")
		return
	}
	if err := crossOrigin.Check(r); err != nil {
		l.log.Warn("machine action refused", "action", action, "remote", ip, "reason", err)
		profile.Error(w, http.StatusForbidden, action+": cross-origin request refused")
		return
	}
	if r.Header.Get(actionHeader) != action {
		profile.Error(w, http.StatusForbidden, action+": send the header \""+actionHeader+": "+action+"\" (state changes need it, so that a web page cannot forge them)")
		return
	}
	m, err := hwaddr.Parse(r.PathValue("mac"))
	if err != nil {
		profile.Error(w, http.StatusBadRequest, action+": "+err.Error())
		return
	}
	var by string
	switch {
	case action == "installed" && l.holdsLease(r.Context(), m, ip):
		by = "the machine, from its leased address " + ip.String()
	case l.fromAdmin(r):
		by = "admin " + ip.String()
	default:
		l.log.Warn("machine action refused", "action", action, "mac", m, "remote", ip, "reason", "not in admin_allow and not the lease holder")
		msg := action + ": " + ip.String() + " is not in admin_allow"
		if action == "installed" {
			msg += " and does not hold " + m.String() + "'s DHCP lease"
		}
		profile.Error(w, http.StatusForbidden, msg)
		return
	}
	installed := action == "installed"
	if _, err := l.state.set(m, installed, time.Now()); err != nil {
		l.log.Error("install state", "mac", m, "err", err)
		profile.Error(w, http.StatusInternalServerError, "saving state: "+err.Error())
		return
	}
	msg := m.String() + " will be reinstalled on its next network boot\n"
	if installed {
		l.event(m, ip, stageInstalled, "by "+by)
		msg = m.String() + " is installed: its next network boot boots the local disk\n"
	} else {
		l.event(m, netip.Addr{}, stageReinstall, "by "+by)
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte(msg))
}

// confined serves the regular files of a tree (an os.Root's, or
// ownerLinkFS) and nothing else: no directory listings (a directory is
// "not found"), no FIFOs, devices or sockets (opening a FIFO would block a
// thread per request), and nothing the tree itself refuses. Whatever it refuses
// other than "does not exist" is logged with the reason and answered as
// permission denied, so the file server says 403, not 500.
type confined struct {
	fs.FS
	log  *slog.Logger
	tree string // "assets" or "tftp_root", for the log
}

func (c confined) Open(name string) (fs.File, error) {
	st, err := fs.Stat(c.FS, name) // both trees stat without opening: a FIFO does not block
	if err == nil && st.IsDir() {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	if err == nil && !st.Mode().IsRegular() {
		err = fmt.Errorf("not a regular file (%s)", files.Kind(st.Mode()))
	}
	var f fs.File
	if err == nil {
		f, err = c.FS.Open(name)
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		c.log.Warn("file refused", "tree", c.tree, "path", name, "reason", err)
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrPermission}
	}
	return f, err
}
