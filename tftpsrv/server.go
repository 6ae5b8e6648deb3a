package tftpsrv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pin/tftp/v3"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// Sentinel errors. Errors returned by the package wrap one of these (or an
// io/fs error such as fs.ErrNotExist) so callers can test them with errors.Is.
var (
	// ErrNotHandled is returned by a Handler that does not answer a name,
	// so the server falls back to its FS. A Handler may equally return an
	// error wrapping fs.ErrNotExist.
	ErrNotHandled = errors.New("tftpsrv: not handled")
	// ErrInvalidPath reports a requested file name that is not acceptable:
	// too long, not a valid fs path, or containing NUL, backslash or control
	// characters.
	ErrInvalidPath = errors.New("tftpsrv: invalid file name")
	// ErrEscape reports a symbolic link that leads outside the served tree
	// (or an unresolvable chain of links); it is never followed.
	ErrEscape = errors.New("tftpsrv: symbolic link leaves the tree")
	// ErrNotRegular reports a request for a directory or special file.
	ErrNotRegular = errors.New("tftpsrv: not a regular file")
	// ErrBusy reports a request refused because MaxTransfers transfers
	// are already in progress.
	ErrBusy = errors.New("tftpsrv: too many transfers in progress")
	// ErrReadOnly reports a write request; the server never accepts writes.
	ErrReadOnly = errors.New("tftpsrv: write requests are refused")
	// ErrAlreadyServing is returned by Serve when it is called on a Server
	// that is already serving.
	ErrAlreadyServing = errors.New("tftpsrv: server is already serving")
)

// Request describes one TFTP read request after its file name was checked.
type Request struct {
	// Filename is the cleaned name, in fs.ValidPath form (no leading "/").
	Filename string
	// Client is the client's address and port (its transfer ID).
	Client netip.AddrPort
}

// Handler answers a read request with generated content. Returning an error
// that wraps ErrNotHandled or fs.ErrNotExist makes the server fall back to its
// FS; any other error is sent to the client as a TFTP error and logged. The
// returned slice must not be modified afterwards; its length is announced as
// the transfer size (tsize).
type Handler interface {
	ServeTFTP(ctx context.Context, req *Request) ([]byte, error)
}

// HandlerFunc adapts an ordinary function to the Handler interface.
type HandlerFunc func(ctx context.Context, req *Request) ([]byte, error)

// ServeTFTP calls f(ctx, req).
func (f HandlerFunc) ServeTFTP(ctx context.Context, req *Request) ([]byte, error) {
	return f(ctx, req)
}

// Transfer is reported to Server.OnTransfer once per read request, when it
// ends (successfully, refused, or failed).
type Transfer struct {
	// Filename is the cleaned name, or the raw requested name if it was
	// refused as invalid.
	Filename string
	// Client is the client's address and port.
	Client netip.AddrPort
	// Size is the size of the answered file, or -1 if no file was found.
	Size int64
	// Bytes is the number of file bytes the server read and sent.
	Bytes int64
	// Duration is the time from the request to the end of the transfer.
	Duration time.Duration
	// Dynamic is true when the Handler, not the FS, produced the content.
	Dynamic bool
	// Err is nil on success. It wraps ErrInvalidPath, ErrEscape,
	// ErrNotRegular, fs.ErrNotExist, or a network/timeout error.
	Err error
}

// Stats holds counters since the Server was created. All fields only grow,
// except Active.
type Stats struct {
	Requests  uint64 // read requests received
	Completed uint64 // transfers that ended with the last block acknowledged
	NotFound  uint64 // requests for files that exist neither in Handler nor FS
	Refused   uint64 // invalid names, escaping links, non-regular files, write requests
	Failed    uint64 // transfers aborted: timeout, client error, handler error, shutdown
	Busy      uint64 // requests refused because MaxTransfers were in progress
	Malformed uint64 // packets on the listening socket that were not a request
	BytesSent uint64 // file bytes read for transfers
	Active    int64  // transfers in progress now
}

// Server is a read-only TFTP server (RFC 1350) with the blksize (RFC 2348)
// and tsize (RFC 2349) options, built on github.com/pin/tftp/v3.
// The zero value serves nothing (every request is answered "file not
// found"); set FS and/or Handler. Fields must not be changed while serving.
type Server struct {
	// FS is the served tree. Use DirFS for a directory on disk: it never
	// follows a symbolic link out of the directory. Other file systems that
	// implement fs.ReadLinkFS (os.DirFS, fstest.MapFS) are checked link by
	// link before a file is opened.
	FS fs.FS
	// Handler, if set, is asked first for every request; see Handler.
	Handler Handler
	// Logger receives one line per refused request and per failed transfer
	// (Warn), and per completed transfer (Debug). Nil discards.
	Logger *slog.Logger
	// OnTransfer, if set, is called once per read request when it ends.
	// It runs on the transfer's goroutine and must not block for long.
	OnTransfer func(Transfer)
	// Timeout is how long the server waits for an acknowledgement before
	// retransmitting. Zero means 1s (tftpd-hpa's default). The RFC 2349
	// "timeout" option is not negotiated (pin/tftp ignores it; the client
	// keeps its own timeout).
	Timeout time.Duration
	// Retries is how many times a block is retransmitted before the
	// transfer is aborted. Zero means 5. Retransmissions back off
	// exponentially: the waits are Timeout, 2×, 4×, then 5× Timeout.
	Retries int
	// MaxBlockSize caps the blksize a client may negotiate (it is also
	// capped by the interface MTU). Zero means no cap beyond the MTU,
	// except in SinglePort mode where zero means 1468.
	MaxBlockSize int
	// SinglePort answers every transfer from the listening port instead of
	// one ephemeral port per transfer, for firewalls that only allow port
	// 69. It is slower (pin/tftp demultiplexes under one lock).
	SinglePort bool
	// Anticipate, when > 1, sends that many blocks (at most 60) before
	// waiting for their acknowledgements: pin/tftp's "sender anticipate".
	// It is not RFC 7440 windowsize (nothing is negotiated): it works with
	// lockstep clients because they acknowledge every block, but a lost
	// block costs a full Timeout. See the package documentation for
	// measurements. 0 or 1 is plain lockstep.
	Anticipate uint
	// MaxTransfers bounds the transfers in progress; a request beyond it is
	// answered with an error at once, so a flood of requests (or of
	// vanished clients) cannot pile up sockets and goroutines. Zero means
	// 1000; negative means no limit.
	MaxTransfers int

	serving atomic.Bool
	wg      sync.WaitGroup // our read/write handlers in flight

	requests, completed, notFound, refused, failed, busy, malformed, bytesSent atomic.Uint64
	active                                                                     atomic.Int64
}

// Stats returns a snapshot of the server's counters.
func (s *Server) Stats() Stats {
	return Stats{
		Requests:  s.requests.Load(),
		Completed: s.completed.Load(),
		NotFound:  s.notFound.Load(),
		Refused:   s.refused.Load(),
		Failed:    s.failed.Load(),
		Busy:      s.busy.Load(),
		Malformed: s.malformed.Load(),
		BytesSent: s.bytesSent.Load(),
		Active:    s.active.Load(),
	}
}

// DirFS returns a file system for the directory dir that is confined to it
// by the kernel (os.OpenRoot): symbolic links inside dir work, links that
// leave dir fail to open. The directory stays open for the life of the
// process.
func DirFS(dir string) (fs.FS, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("tftpsrv: open root: %w", err)
	}
	return root.FS(), nil
}

func (s *Server) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}

func (s *Server) timeout() time.Duration {
	if s.Timeout <= 0 {
		return time.Second
	}
	return s.Timeout
}

func (s *Server) maxTransfers() int {
	if s.MaxTransfers == 0 {
		return 1000
	}
	return s.MaxTransfers
}

func (s *Server) retries() int {
	if s.Retries <= 0 {
		return 5
	}
	return s.Retries
}

// ListenAndServe listens on the UDP address addr (e.g. "127.0.0.1:6969" or
// ":69") and calls Serve. It returns nil once ctx is done and every transfer
// has ended, or an error if it cannot listen.
func (s *Server) ListenAndServe(ctx context.Context, addr string) error {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return fmt.Errorf("tftpsrv: resolve %q: %w", addr, err)
	}
	conn, err := net.ListenUDP("udp", ua)
	if err != nil {
		return fmt.Errorf("tftpsrv: listen: %w", err)
	}
	enablePacketInfo(conn)
	return s.Serve(ctx, conn)
}

// Serve answers TFTP requests arriving on conn until ctx is done, then closes
// conn, aborts transfers in progress at their next block and waits for all of
// them to end. A transfer whose client has vanished ends after its
// retransmissions run out (about 18×Timeout with the default Retries). Serve
// returns nil after a cancellation. conn should be a *net.UDPConn: with any
// other net.PacketConn pin/tftp cannot learn the interface MTU and limits
// blocks to 512 bytes.
func (s *Server) Serve(ctx context.Context, conn net.PacketConn) error {
	if !s.serving.CompareAndSwap(false, true) {
		return ErrAlreadyServing
	}
	defer s.serving.Store(false)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	enablePacketInfo(conn)

	ps := tftp.NewServer(
		func(name string, rf io.ReaderFrom) error { return s.serveRead(ctx, name, rf) },
		func(name string, wt io.WriterTo) error { return s.refuseWrite(name, wt) },
	)
	timeout := s.timeout()
	ps.SetTimeout(timeout)
	ps.SetRetries(s.retries())
	ps.SetBackoff(func(attempt int) time.Duration {
		// pin/tftp sleeps this long after a timeout before retransmitting:
		// the gaps between transmissions become T, 2T, 4T, 5T, 5T...
		d := timeout * time.Duration((1<<min(attempt, 3))-1)
		if d > 4*timeout {
			d = 4 * timeout
		}
		return d + rand.N(timeout/8+1)
	})
	ps.SetHook(hook{s})
	maxBlk := s.MaxBlockSize
	if s.SinglePort && maxBlk == 0 {
		maxBlk = 1468
	}
	if maxBlk > 0 {
		ps.SetBlockSize(maxBlk)
	}
	if s.Anticipate > 1 {
		ps.SetAnticipate(s.Anticipate)
	}
	if s.SinglePort {
		ps.EnableSinglePort() // after SetBlockSize: it defaults the size to 512
	}

	done := make(chan error, 1)
	go func() { done <- ps.Serve(conn) }()

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-done:
		done = nil
		cancel()
	}
	// Shutdown closes conn (multi-port mode) and waits for pin's transfer
	// goroutines; in single-port mode it only cancels, so close conn
	// ourselves to unblock the read loop, then wait for it.
	cancel()
	if s.SinglePort {
		ps.Shutdown()
		conn.Close()
	} else {
		ps.Shutdown()
	}
	if done != nil {
		if err := <-done; err != nil && serveErr == nil {
			serveErr = err
		}
	}
	s.wg.Wait()
	conn.Close()
	if serveErr != nil && ctx.Err() == nil {
		return fmt.Errorf("tftpsrv: serve: %w", serveErr)
	}
	return nil
}

// enablePacketInfo asks the kernel for the destination address and interface
// of each datagram. pin/tftp needs them to learn the interface MTU: a request
// received without them is limited to 512-byte blocks. pin/tftp enables this
// itself, but only once its loop runs; doing it here, synchronously, closes
// that window for requests that arrive while Serve starts.
func enablePacketInfo(conn net.PacketConn) {
	uc, ok := conn.(*net.UDPConn)
	if !ok {
		return
	}
	if la, ok := uc.LocalAddr().(*net.UDPAddr); ok && la.IP.To4() == nil && !la.IP.IsUnspecified() {
		_ = ipv6.NewPacketConn(uc).SetControlMessage(ipv6.FlagDst|ipv6.FlagInterface, true)
		return
	}
	_ = ipv4.NewPacketConn(uc).SetControlMessage(ipv4.FlagDst|ipv4.FlagInterface, true)
}

// hook counts packets that pin/tftp's request loop could not use.
type hook struct{ s *Server }

func (h hook) OnSuccess(tftp.TransferStats) {}

func (h hook) OnFailure(st tftp.TransferStats, err error) {
	// Transfer failures carry the remote address and are reported by
	// serveRead; only request-loop errors arrive without one.
	if st.RemoteAddr != nil || err == nil || errors.Is(err, net.ErrClosed) {
		return
	}
	h.s.malformed.Add(1)
	h.s.logger().Debug("tftp: dropped packet", "err", err)
}

// clientError is what pin/tftp sends to the client: a short fixed message,
// while the full error (with the requested name) is logged.
type clientError struct{ err error }

func (e clientError) Error() string { return clientMessage(e.err) }
func (e clientError) Unwrap() error { return e.err }

func addrPort(a net.UDPAddr) netip.AddrPort {
	ap := a.AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

func (s *Server) refuseWrite(name string, wt io.WriterTo) error {
	s.wg.Add(1)
	defer s.wg.Done()
	var client netip.AddrPort
	if it, ok := wt.(tftp.IncomingTransfer); ok {
		client = addrPort(it.RemoteAddr())
	}
	s.refused.Add(1)
	s.logger().Warn("tftp: write request refused", "file", name, "client", client)
	return clientError{fmt.Errorf("%w: %q", ErrReadOnly, name)}
}

// ctxReader stops a transfer at its next block once ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, fmt.Errorf("tftpsrv: server shutting down: %w", err)
	}
	return c.r.Read(p)
}

// open finds the content for req: Handler first, then FS.
func (s *Server) open(ctx context.Context, req *Request) (r io.Reader, size int64, dynamic bool, closer io.Closer, err error) {
	if s.Handler != nil {
		data, herr := s.callHandler(ctx, req)
		switch {
		case herr == nil:
			return bytes.NewReader(data), int64(len(data)), true, nil, nil
		case errors.Is(herr, ErrNotHandled), errors.Is(herr, fs.ErrNotExist):
		default:
			return nil, -1, true, nil, fmt.Errorf("tftpsrv: handler for %q: %w", req.Filename, herr)
		}
	}
	if s.FS == nil {
		return nil, -1, false, nil, fmt.Errorf("tftpsrv: %q: %w", req.Filename, fs.ErrNotExist)
	}
	name, err := resolveInTree(s.FS, req.Filename)
	if err != nil {
		return nil, -1, false, nil, fmt.Errorf("tftpsrv: %q: %w", req.Filename, err)
	}
	f, err := s.FS.Open(name)
	if err != nil {
		return nil, -1, false, nil, fmt.Errorf("tftpsrv: %q: %w", req.Filename, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, -1, false, nil, fmt.Errorf("tftpsrv: %q: %w", req.Filename, err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, -1, false, nil, fmt.Errorf("tftpsrv: %q: %w", req.Filename, ErrNotRegular)
	}
	return f, fi.Size(), false, f, nil
}

func (s *Server) callHandler(ctx context.Context, req *Request) (data []byte, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("handler panic: %v", p)
		}
	}()
	return s.Handler.ServeTFTP(ctx, req)
}

// serveRead runs on pin/tftp's transfer goroutine for each read request.
func (s *Server) serveRead(ctx context.Context, rawName string, rf io.ReaderFrom) (retErr error) {
	s.wg.Add(1)
	defer s.wg.Done()
	start := time.Now()
	s.requests.Add(1)
	active := s.active.Add(1)
	defer s.active.Add(-1)

	var client netip.AddrPort
	ot, _ := rf.(tftp.OutgoingTransfer)
	if ot != nil {
		client = addrPort(ot.RemoteAddr())
	}
	tr := Transfer{Filename: rawName, Client: client, Size: -1}
	log := s.logger()
	finish := func(err error) error {
		tr.Duration = time.Since(start)
		tr.Err = err
		if s.OnTransfer != nil {
			s.OnTransfer(tr)
		}
		if err != nil {
			return clientError{err}
		}
		return nil
	}

	if limit := s.maxTransfers(); limit > 0 && active > int64(limit) {
		s.busy.Add(1)
		log.Debug("tftp: busy, request refused", "file", rawName, "client", client, "active", active-1)
		return finish(fmt.Errorf("%w (%d)", ErrBusy, limit))
	}
	name, err := CleanPath(rawName)
	if err != nil {
		s.refused.Add(1)
		log.Warn("tftp: request refused", "client", client, "err", err)
		return finish(err)
	}
	tr.Filename = name
	req := &Request{Filename: name, Client: client}
	r, size, dynamic, closer, err := s.open(ctx, req)
	tr.Dynamic = dynamic
	if err != nil {
		switch {
		case errors.Is(err, fs.ErrNotExist):
			s.notFound.Add(1)
			log.Info("tftp: file not found", "file", name, "client", client)
		case errors.Is(err, ErrEscape), errors.Is(err, ErrNotRegular), errors.Is(err, ErrInvalidPath),
			errors.Is(err, fs.ErrPermission), errors.Is(err, fs.ErrInvalid):
			s.refused.Add(1)
			log.Warn("tftp: request refused", "file", name, "client", client, "err", err)
		default:
			s.failed.Add(1)
			log.Warn("tftp: request failed", "file", name, "client", client, "err", err)
		}
		return finish(err)
	}
	if closer != nil {
		defer closer.Close()
	}
	tr.Size = size
	if ot != nil {
		ot.SetSize(size) // tsize, when the client asked for it
	}
	n, err := rf.ReadFrom(ctxReader{ctx, r})
	tr.Bytes = n
	s.bytesSent.Add(uint64(n))
	if err != nil {
		s.failed.Add(1)
		err = fmt.Errorf("tftpsrv: sending %q: %w", name, err)
		log.Warn("tftp: transfer failed", "file", name, "client", client, "bytes", n, "err", err)
		// pin/tftp has already sent an ERROR packet and closed the
		// transfer; returning nil avoids a second abort.
		finish(err)
		return nil
	}
	s.completed.Add(1)
	log.Debug("tftp: sent", "file", name, "client", client, "bytes", n, "dynamic", dynamic, "duration", time.Since(start))
	finish(nil)
	return nil
}
