package tftpsrv

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/metalboot/metalboot/internal/files"
	"github.com/metalboot/metalboot/internal/sockets"
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
	// ErrClientBusy reports a request refused because its client address
	// already has MaxTransfersPerClient transfers in progress.
	ErrClientBusy = errors.New("tftpsrv: too many transfers in progress for this client")
	// ErrReadOnly reports a write request; the server never accepts writes.
	ErrReadOnly = errors.New("tftpsrv: write requests are refused")
	// ErrTimeout reports a transfer aborted because the client stopped
	// acknowledging.
	ErrTimeout = errors.New("tftpsrv: client stopped acknowledging")
	// ErrClientAbort reports a transfer the client ended with an ERROR
	// packet. Firmware does this on purpose after learning the file size
	// from the tsize option.
	ErrClientAbort = errors.New("tftpsrv: client ended the transfer")
	// ErrAlreadyServing is returned by Serve when it is called on a Server
	// that is already serving.
	ErrAlreadyServing = errors.New("tftpsrv: server is already serving")
	// ErrConfig wraps every error [Server.Validate] reports (and so every
	// configuration error Listen, Serve and ListenAndServe return).
	ErrConfig = errors.New("tftpsrv: invalid configuration")
	// ErrNoListener is returned by Serve when given no connection.
	ErrNoListener = errors.New("tftpsrv: no connection to serve")
)

// Defaults: what the zero value of the Server field of the same name does.
const (
	// DefaultAddr is the UDP address Listen and ListenAndServe use when
	// Server.Addr is empty: port 69 on every address.
	DefaultAddr = ":69"
	// DefaultTimeout is the retransmission timeout when Server.Timeout is
	// zero (tftpd-hpa's default).
	DefaultTimeout = time.Second
	// DefaultRetries is the number of retransmissions without progress
	// before a transfer is aborted, when Server.Retries is zero.
	DefaultRetries = 5
	// DefaultMaxWindow is the largest windowsize (RFC 7440) a client may
	// negotiate when Server.MaxWindow is zero.
	DefaultMaxWindow = 64
	// DefaultSendAhead is the number of blocks in flight to a client that
	// did not negotiate windowsize, when Server.SendAhead is zero.
	DefaultSendAhead = 8
	// DefaultMaxTransfers bounds the transfers in progress when
	// Server.MaxTransfers is zero.
	DefaultMaxTransfers = 1000
	// DefaultMaxTimeout is the largest RFC 2349 timeout option accepted
	// when Server.MaxTimeout is zero. U-Boot asks for 5 s; GRUB, iPXE,
	// EDK2, SeaBIOS and PXELINUX do not send the option.
	DefaultMaxTimeout = 5 * time.Second
	// DefaultMaxTransfersPerClient is the number of transfers one client
	// address may have in progress when Server.MaxTransfersPerClient is
	// zero. Firmware and GRUB fetch one file at a time.
	DefaultMaxTransfersPerClient = 16
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
	// BlockSize is the negotiated block size. Window is the most blocks
	// that were in flight at once (0 if no data was sent): at most the
	// negotiated windowsize or Server.SendAhead, and 1 for a client that
	// never acknowledged a block (nothing is sent ahead before the
	// client's first acknowledgement). WindowSize reports whether the
	// client negotiated the window (RFC 7440) rather than getting
	// Server.SendAhead.
	BlockSize, Window int
	WindowSize        bool
	// Retransmits counts data blocks sent more than once: a lossy link,
	// or a client that cannot keep up with the window.
	Retransmits int
	// Err is nil on success. It wraps ErrInvalidPath, ErrEscape,
	// ErrNotRegular, fs.ErrNotExist, or a network/timeout error.
	Err error
}

// Stats holds counters since the Server was created, as returned by
// Server.Stats. All fields only grow, except Active. Malformed, SendErrors
// and HandlerErrors mean what the same names mean in dhcpsrv and dnssrv
// (see the server contract in the documentation of package
// github.com/metalboot/metalboot).
type Stats struct {
	Requests  uint64 // read requests received
	Completed uint64 // transfers that ended with the last block acknowledged
	NotFound  uint64 // requests for files that exist neither in Handler nor FS
	Refused   uint64 // invalid names, escaping links, non-regular files, write requests
	Failed    uint64 // transfers that failed: timeout, handler or read error, shutdown
	Aborted   uint64 // transfers the client ended with an ERROR packet (firmware does after reading tsize)
	Busy      uint64 // requests refused because MaxTransfers were in progress
	// ClientLimited counts requests refused because their client address
	// had MaxTransfersPerClient transfers in progress.
	ClientLimited uint64
	Malformed     uint64 // packets on the listening socket that were not a request
	BytesSent     uint64 // file bytes read for transfers
	// Retransmits counts data blocks sent more than once.
	Retransmits uint64
	// SendErrors counts packets (data, OACK, ERROR) the socket would not
	// send; a transfer whose data cannot be sent fails (Failed).
	SendErrors uint64
	// HandlerErrors counts requests the Handler answered with an error
	// other than ErrNotHandled or fs.ErrNotExist (a panic included): the
	// client gets a TFTP error, never the FS's file of that name.
	HandlerErrors uint64
	Active        int64 // transfers in progress now
}

// Server is a read-only TFTP server (RFC 1350) with option negotiation
// (RFC 2347): blksize (RFC 2348), tsize and timeout (RFC 2349) and
// windowsize (RFC 7440). See the package documentation for the transfer
// engine. The zero value is valid and serves nothing (every request is
// answered "file not found") on DefaultAddr; set FS and/or Handler.
// Fields must not be changed while serving. It follows the metalboot
// server contract (see the documentation of package
// github.com/metalboot/metalboot): Validate reports every configuration
// mistake, Listen binds, Serve serves a socket it does not close, the zero
// value of a field means its DefaultX, a nil Logger discards.
type Server struct {
	// Addr is the UDP address Listen and ListenAndServe bind, e.g.
	// "127.0.0.1:6969" or ":69" (port 0: any free port; Listen's
	// connection tells which). Empty means DefaultAddr. Serve ignores it.
	Addr string
	// FS is the served tree. Use DirFS for a directory on disk: it never
	// follows a symbolic link out of the directory. Other file systems that
	// implement fs.ReadLinkFS (os.DirFS, fstest.MapFS) are checked link by
	// link before a file is opened. Nil: no files (only Handler answers).
	FS fs.FS
	// Handler, if set, is asked first for every request; see Handler.
	// Nil: every request goes to FS.
	Handler Handler
	// Logger receives one line per refused request and per failed transfer
	// (Warn), and per completed transfer (Debug). Nil discards them.
	Logger *slog.Logger
	// OnTransfer, if set (nil: none), is called once per read request
	// when it ends. It runs on the transfer's goroutine (for a request
	// refused as busy, on the listening loop) and must not block for long.
	OnTransfer func(Transfer)
	// Timeout is how long the server waits for an acknowledgement before
	// retransmitting, unless the client negotiates the RFC 2349 "timeout"
	// option. Zero means DefaultTimeout (1s, tftpd-hpa's default);
	// negative is a configuration error.
	Timeout time.Duration
	// MaxTimeout is the largest RFC 2349 "timeout" option the server
	// accepts. A client asking for more gets the option refused (left out
	// of the OACK: RFC 2349 lets the server echo the value or refuse it,
	// nothing else) and the transfer uses Timeout. Zero means
	// DefaultMaxTimeout (5s); negative refuses the option always. Without
	// the bound a forged request with "timeout 255" held a transfer slot
	// for about 93 minutes.
	MaxTimeout time.Duration
	// Retries is how many times the server retransmits without progress
	// before it aborts the transfer. Zero means DefaultRetries (5);
	// negative is a configuration error. Retransmissions back off:
	// the waits are Timeout, 2×, 4×, then 5× Timeout. Until the client's
	// first acknowledgement (of the OACK or of block 1) the first packet
	// is resent at most twice (fewer if Retries is smaller), each after
	// Timeout, so a request whose source never answers costs at most three
	// packets and 3×Timeout.
	Retries int
	// MaxBlockSize caps the blksize a client may negotiate. It is also
	// capped by the MTU of the interface the request arrived on (1468 when
	// that is unknown). Zero means no cap beyond that; otherwise it must be
	// a valid blksize, 8 to 65464 (anything else is a configuration
	// error).
	MaxBlockSize int
	// MaxWindow caps the windowsize (RFC 7440) a client may negotiate; the
	// server also keeps windowsize × blksize within 1 MiB. Zero means
	// DefaultMaxWindow (64); negative refuses the option (the client then
	// runs lockstep or with SendAhead); above 65535 (the option's range)
	// is a configuration error.
	MaxWindow int
	// SendAhead is how many blocks the server keeps in flight to a client
	// that did not negotiate windowsize. Such a client acknowledges every
	// block, so the server slides the window on each acknowledgement
	// instead of waiting a round trip per block; it goes back only on a
	// timeout, which also halves the window. Zero means DefaultSendAhead
	// (8); 1 is strict RFC 1350 lockstep; negative is a configuration
	// error.
	SendAhead int
	// SinglePort answers every transfer from the listening port instead of
	// one ephemeral port per transfer, for firewalls that only allow port
	// 69. Transfers are told apart by the client's address and port.
	// Use it too when conn belongs to another network namespace than the
	// process: per-transfer sockets are opened in the namespace of the OS
	// thread that runs the transfer.
	SinglePort bool
	// MaxTransfers bounds the transfers in progress; a request beyond it is
	// answered with an error at once, so a flood of requests (or of
	// vanished clients) cannot pile up sockets and goroutines. Zero means
	// DefaultMaxTransfers (1000); negative means no limit.
	MaxTransfers int
	// MaxTransfersPerClient bounds the transfers in progress for one
	// client IP address (any port), so that a flood from one address, or
	// forged with one victim's address, cannot take every MaxTransfers
	// slot. A request beyond it is answered "server busy" at once and
	// counted in Stats.ClientLimited. Zero means
	// DefaultMaxTransfersPerClient (16); negative means no limit. Raise it
	// when many machines reach the server through one NAT address.
	MaxTransfersPerClient int

	serving atomic.Bool
	wg      sync.WaitGroup // transfers in flight
	mtus    mtuCache

	cmu     sync.Mutex
	clients map[netip.Addr]int // transfers in progress by client address

	requests, completed, notFound, refused, failed, aborted, busy, clientLimited, malformed, bytesSent, retransmits atomic.Uint64
	sendErrors, handlerErrors                                                                                       atomic.Uint64
	active                                                                                                          atomic.Int64
}

// Stats returns a snapshot of the server's counters.
func (s *Server) Stats() Stats {
	return Stats{
		Requests:      s.requests.Load(),
		Completed:     s.completed.Load(),
		NotFound:      s.notFound.Load(),
		Refused:       s.refused.Load(),
		Failed:        s.failed.Load(),
		Aborted:       s.aborted.Load(),
		Busy:          s.busy.Load(),
		ClientLimited: s.clientLimited.Load(),
		Malformed:     s.malformed.Load(),
		BytesSent:     s.bytesSent.Load(),
		Retransmits:   s.retransmits.Load(),
		SendErrors:    s.sendErrors.Load(),
		HandlerErrors: s.handlerErrors.Load(),
		Active:        s.active.Load(),
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
		return DefaultTimeout
	}
	return s.Timeout
}

func (s *Server) maxWindow() int {
	switch {
	case s.MaxWindow == 0:
		return DefaultMaxWindow
	case s.MaxWindow < 0:
		return 0
	}
	return s.MaxWindow
}

func (s *Server) sendAhead() int {
	if s.SendAhead <= 0 {
		return DefaultSendAhead
	}
	return s.SendAhead
}

func (s *Server) maxTransfers() int {
	if s.MaxTransfers == 0 {
		return DefaultMaxTransfers
	}
	return s.MaxTransfers
}

func (s *Server) maxTimeout() time.Duration {
	if s.MaxTimeout == 0 {
		return DefaultMaxTimeout
	}
	return s.MaxTimeout // negative: no value is accepted
}

func (s *Server) maxTransfersPerClient() int {
	if s.MaxTransfersPerClient == 0 {
		return DefaultMaxTransfersPerClient
	}
	return s.MaxTransfersPerClient
}

// acquireClient counts a transfer for the client address a, unless it has
// MaxTransfersPerClient already and enforce is set.
func (s *Server) acquireClient(a netip.Addr, enforce bool) bool {
	s.cmu.Lock()
	defer s.cmu.Unlock()
	if limit := s.maxTransfersPerClient(); enforce && limit > 0 && s.clients[a] >= limit {
		return false
	}
	if s.clients == nil {
		s.clients = make(map[netip.Addr]int)
	}
	s.clients[a]++
	return true
}

func (s *Server) releaseClient(a netip.Addr) {
	s.cmu.Lock()
	defer s.cmu.Unlock()
	if s.clients[a] <= 1 {
		delete(s.clients, a)
		return
	}
	s.clients[a]--
}

func (s *Server) retries() int {
	if s.Retries <= 0 {
		return DefaultRetries
	}
	return s.Retries
}

// Validate reports every configuration mistake of s, each naming its
// field, joined in one error (errors.Join) whose parts wrap [ErrConfig];
// nil means the configuration is usable. It binds nothing and resolves no
// name. Listen, Serve and ListenAndServe call it first and return its
// error.
func (s *Server) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: %s: %s", ErrConfig, field, fmt.Sprintf(format, args...)))
	}
	if s.Addr != "" {
		if _, port, err := net.SplitHostPort(s.Addr); err != nil {
			bad("Addr", "%q: %v", s.Addr, err)
		} else if _, err := strconv.ParseUint(port, 10, 16); err != nil {
			bad("Addr", "%q: port %q is not a number from 0 to 65535", s.Addr, port)
		}
	}
	if s.Timeout < 0 {
		bad("Timeout", "negative (%v)", s.Timeout)
	}
	if s.Retries < 0 {
		bad("Retries", "negative (%d)", s.Retries)
	}
	if s.MaxBlockSize != 0 && (s.MaxBlockSize < minBlockSize || s.MaxBlockSize > maxBlockSize) {
		bad("MaxBlockSize", "%d: want 0 (no cap) or %d to %d", s.MaxBlockSize, minBlockSize, maxBlockSize)
	}
	if s.MaxWindow > 65535 {
		bad("MaxWindow", "%d: the windowsize option goes up to 65535", s.MaxWindow)
	}
	if s.SendAhead < 0 {
		bad("SendAhead", "negative (%d)", s.SendAhead)
	}
	return errors.Join(errs...)
}

func (s *Server) addr() string {
	if s.Addr == "" {
		return DefaultAddr
	}
	return s.Addr
}

// Listen validates the configuration and opens the UDP socket Serve
// takes, on Addr (DefaultAddr when empty). A bind error is returned here,
// before anything is served. The caller owns the socket: Serve does not
// close it.
func (s *Server) Listen(ctx context.Context) (net.PacketConn, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	var lc net.ListenConfig
	conn, err := lc.ListenPacket(ctx, "udp", s.addr())
	if err != nil {
		return nil, fmt.Errorf("tftpsrv: listen: %w", err)
	}
	return conn, nil
}

// ListenAndServe is Listen then Serve: it serves until ctx ends and every
// transfer has ended, then closes the socket it opened and returns nil.
// Configuration and bind errors are returned at once.
func (s *Server) ListenAndServe(ctx context.Context) error {
	conn, err := s.Listen(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	return s.Serve(ctx, conn)
}

// Serve answers TFTP requests arriving on conn (a socket the caller
// opened, with Listen or otherwise) until ctx is done, then ends the
// transfers in progress (each client gets an ERROR packet), waits for
// them and returns nil. It never closes conn, and leaves no read deadline
// set on it. It returns the configuration error of Validate without
// serving, ErrNoListener for a nil conn, and ErrAlreadyServing while
// another Serve of s runs. With a conn that is not a *net.UDPConn every
// transfer is answered from conn, as in SinglePort mode.
func (s *Server) Serve(ctx context.Context, conn net.PacketConn) error {
	if err := s.Validate(); err != nil {
		return err
	}
	if conn == nil {
		return ErrNoListener
	}
	if !s.serving.CompareAndSwap(false, true) {
		return ErrAlreadyServing
	}
	defer s.serving.Store(false)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	l := newListener(conn)
	var mux *portMux
	if s.SinglePort || l.uc == nil {
		mux = &portMux{l: l}
	}
	defer sockets.InterruptReads(ctx, conn.SetReadDeadline)()

	var serveErr error
	buf := make([]byte, 4096)
	for {
		n, info, err := l.read(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				if ctx.Err() == nil {
					serveErr = err
				}
				break
			}
			// A transient error (an ICMP error reported on the socket,
			// a truncated datagram): count it and go on.
			s.malformed.Add(1)
			s.logger().Debug("tftp: read error", "err", err)
			continue
		}
		pkt := buf[:n]
		if mux != nil && mux.deliver(info.from, pkt) {
			continue
		}
		req, err := parseRequest(pkt)
		if err != nil {
			// No answer: an ERROR to a forged source would make the
			// server a reflector.
			s.malformed.Add(1)
			s.logger().Debug("tftp: dropped packet", "client", info.from, "err", err)
			continue
		}
		if req.op == opRRQ {
			s.requests.Add(1)
			if limit := s.maxTransfers(); limit > 0 && s.active.Load() >= int64(limit) {
				s.refuseBusy(l, req, info, fmt.Errorf("%w (%d)", ErrBusy, limit), &s.busy)
				continue
			}
		}
		// Write requests are refused at once; only read requests are
		// held to the per-client limit, but both are counted.
		client := info.from.Addr()
		if !s.acquireClient(client, req.op == opRRQ) {
			s.refuseBusy(l, req, info, fmt.Errorf("%w (%d)", ErrClientBusy, s.maxTransfersPerClient()), &s.clientLimited)
			continue
		}
		var t transport
		if mux != nil {
			mt, ok := mux.open(info)
			if !ok {
				s.releaseClient(client)
				continue // a repeated request while its transfer runs
			}
			t = mt
		} else {
			ut, err := dialTransport(info)
			if err != nil {
				s.releaseClient(client)
				s.failed.Add(1)
				s.logger().Warn("tftp: cannot open a transfer socket", "client", info.from, "err", err)
				continue
			}
			t = ut
		}
		s.active.Add(1)
		s.wg.Add(1)
		go s.handle(ctx, countSendErrors{t, &s.sendErrors}, req, info)
	}
	cancel()
	s.wg.Wait()
	if serveErr != nil {
		return fmt.Errorf("tftpsrv: serve: %w", serveErr)
	}
	return nil
}

// countSendErrors counts the failed sends of a transport.
type countSendErrors struct {
	transport
	n *atomic.Uint64
}

func (c countSendErrors) send(pkts [][]byte) error {
	err := c.transport.send(pkts)
	if err != nil {
		c.n.Add(1)
	}
	return err
}

// refuseBusy answers a read request beyond MaxTransfers or
// MaxTransfersPerClient from the listening socket, without starting a
// transfer, and counts it in counter.
func (s *Server) refuseBusy(l *listener, req *request, info packetInfo, err error, counter *atomic.Uint64) {
	counter.Add(1)
	if l.writeTo(errorPacket(errCodeUndefined, clientMessage(err)), info) != nil {
		s.sendErrors.Add(1)
	}
	s.logger().Debug("tftp: busy, request refused", "file", truncate(req.filename), "client", info.from, "err", err)
	if s.OnTransfer != nil {
		s.OnTransfer(Transfer{Filename: req.filename, Client: info.from, Size: -1, Err: err})
	}
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
			s.handlerErrors.Add(1)
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
	// Stat before Open: opening a FIFO blocks until a writer comes (an OS
	// thread per request), opening a device can have effects. os.DirFS,
	// DirFS and fstest.MapFS answer Stat without opening the file.
	fi, err := fs.Stat(s.FS, name)
	if err != nil {
		return nil, -1, false, nil, fmt.Errorf("tftpsrv: %q: %w", req.Filename, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, -1, false, nil, fmt.Errorf("tftpsrv: %q: %w (%s)", req.Filename, ErrNotRegular, files.Kind(fi.Mode()))
	}
	f, err := s.FS.Open(name)
	if err != nil {
		return nil, -1, false, nil, fmt.Errorf("tftpsrv: %q: %w", req.Filename, err)
	}
	fi, err = f.Stat()
	if err != nil {
		f.Close()
		return nil, -1, false, nil, fmt.Errorf("tftpsrv: %q: %w", req.Filename, err)
	}
	if !fi.Mode().IsRegular() { // replaced between Stat and Open
		f.Close()
		return nil, -1, false, nil, fmt.Errorf("tftpsrv: %q: %w (%s)", req.Filename, ErrNotRegular, files.Kind(fi.Mode()))
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

// handle runs one request on its own goroutine.
func (s *Server) handle(ctx context.Context, t transport, req *request, info packetInfo) {
	defer s.wg.Done()
	defer s.active.Add(-1)
	defer s.releaseClient(info.from.Addr())
	defer t.close()
	stop := context.AfterFunc(ctx, func() {
		_ = t.send([][]byte{errorPacket(errCodeUndefined, "server shutting down")})
		t.close()
	})
	defer stop()

	start := time.Now()
	client := info.from
	log := s.logger()
	if req.op == opWRQ {
		s.refused.Add(1)
		log.Warn("tftp: write request refused", "file", truncate(req.filename), "client", client)
		_ = t.send([][]byte{errorPacket(errCodeAccess, clientMessage(ErrReadOnly))})
		return
	}

	tr := Transfer{Filename: req.filename, Client: client, Size: -1}
	finish := func(err error) {
		tr.Duration = time.Since(start)
		tr.Err = err
		if s.OnTransfer != nil {
			s.OnTransfer(tr)
		}
	}
	refuse := func(err error) {
		_ = t.send([][]byte{errorPacket(errorCode(err), clientMessage(err))})
		finish(err)
	}

	name, err := CleanPath(req.filename)
	if err != nil {
		s.refused.Add(1)
		log.Warn("tftp: request refused", "client", client, "err", err)
		refuse(err)
		return
	}
	tr.Filename = name
	r, size, dynamic, closer, err := s.open(ctx, &Request{Filename: name, Client: client})
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
		refuse(err)
		return
	}
	if closer != nil {
		defer closer.Close()
	}
	tr.Size = size

	tsize := size
	if req.mode == "netascii" {
		r = &netasciiReader{r: r}
		tsize = -1 // the converted length is not known in advance
	} else if !dynamic {
		br := readerPool.Get().(*bufio.Reader)
		br.Reset(r)
		defer func() { br.Reset(nil); readerPool.Put(br) }()
		r = br
	}
	maxBlk := s.mtus.maxBlock(info.ifIndex, info.from.Addr().Is6())
	if s.MaxBlockSize > 0 {
		maxBlk = min(maxBlk, s.MaxBlockSize)
	}
	p := s.negotiate(req, tsize, maxBlk)
	x := newSender(ctx, t, r, p, s.retries())
	if len(p.oack) > 0 {
		err = x.handshake(oackPacket(p.oack))
	}
	if err == nil {
		err = x.run()
	}
	tr.Bytes = x.bytes
	tr.BlockSize, tr.Window, tr.WindowSize, tr.Retransmits = p.blksize, x.flight, p.negotiated, x.resent
	s.bytesSent.Add(uint64(x.bytes))
	s.retransmits.Add(uint64(x.resent))
	var ce *clientError
	switch {
	case err == nil:
		s.completed.Add(1)
		log.Debug("tftp: sent", "file", name, "client", client, "bytes", x.bytes, "dynamic", dynamic,
			"blksize", p.blksize, "window", x.flight, "windowsize", p.negotiated, "retransmits", x.resent,
			"duration", time.Since(start))
		finish(nil)
		return
	case errors.As(err, &ce):
		// The client said stop; nothing to answer.
		s.aborted.Add(1)
		err = fmt.Errorf("%w: %q: %w", ErrClientAbort, name, err)
		log.Debug("tftp: client ended the transfer", "file", name, "client", client, "bytes", x.bytes, "err", err)
	case ctx.Err() != nil:
		s.failed.Add(1)
		err = fmt.Errorf("tftpsrv: sending %q: server shutting down: %w", name, ctx.Err())
		log.Warn("tftp: transfer failed", "file", name, "client", client, "bytes", x.bytes, "err", err)
	default:
		s.failed.Add(1)
		err = fmt.Errorf("tftpsrv: sending %q: %w", name, err)
		log.Warn("tftp: transfer failed", "file", name, "client", client, "bytes", x.bytes, "err", err)
		if !errors.Is(err, ErrTimeout) {
			_ = t.send([][]byte{errorPacket(errCodeUndefined, clientMessage(err))})
		}
	}
	finish(err)
}

// readerPool holds read buffers for files: one read(2) per 32 KiB instead of
// one per block.
var readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 32<<10) }}
