package tftpsrv

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strconv"
	"time"
)

// maxWindowBytes bounds the unacknowledged data a transfer keeps in memory
// (windowsize × blksize); the negotiated windowsize is lowered to fit.
const maxWindowBytes = 1 << 20

// maxUnprovenResends is how many times the first packet of a transfer (the
// OACK, or block 1) is resent before the client has acknowledged anything:
// until then nothing proves the request came from the address it names.
const maxUnprovenResends = 2

// errTimeout is the transport's "deadline passed" error.
var errTimeout = errors.New("tftpsrv: timeout")

// transport carries one transfer's packets to and from its client.
type transport interface {
	// send transmits the packets in order (in one system call where the
	// platform allows).
	send(pkts [][]byte) error
	// recv reads the client's next packet into buf, waiting until
	// deadline; it returns errTimeout when the deadline passes.
	recv(buf []byte, deadline time.Time) (int, error)
	// close releases the transport and makes a blocked recv return.
	close()
}

// params are the negotiated parameters of one transfer.
type params struct {
	blksize    int
	window     int  // most blocks in flight
	negotiated bool // the client asked for windowsize (RFC 7440)
	timeout    time.Duration
	oack       []option // accepted options, in the client's order; nil: no OACK
}

// negotiate picks the transfer parameters from the request's options
// (RFC 2347, 2348, 2349, 7440). size is the file size, or -1 when it is not
// known or not meaningful (netascii).
func (s *Server) negotiate(req *request, size int64, maxBlk int) params {
	p := params{blksize: defBlockSize, window: s.sendAhead(), timeout: s.timeout()}
	var accepted []option
	blk, win := 0, 0
	for _, o := range req.options {
		switch o.name {
		case "blksize":
			if n, ok := parseOptInt(o.value, minBlockSize, min(maxBlk, maxBlockSize)); ok {
				blk = n
				accepted = append(accepted, option{o.name, ""})
			}
		case "tsize":
			// A zero tsize is left out: curl rejects an OACK with
			// "tsize 0" ("invalid tsize value in OACK packet") and
			// clients then go on without the size.
			if size > 0 {
				accepted = append(accepted, option{o.name, strconv.FormatInt(size, 10)})
			}
		case "timeout":
			// RFC 2349: the server answers the same value or refuses it;
			// a value above MaxTimeout is refused.
			if n, ok := parseOptInt(o.value, 1, maxOptTimeout+1); ok && n <= maxOptTimeout &&
				time.Duration(n)*time.Second <= s.maxTimeout() {
				p.timeout = time.Duration(n) * time.Second
				accepted = append(accepted, option{o.name, strconv.Itoa(n)})
			}
		case "windowsize":
			if mw := s.maxWindow(); mw > 0 {
				if n, ok := parseOptInt(o.value, 1, min(mw, maxWindowSize)); ok {
					win = n
					accepted = append(accepted, option{o.name, ""})
				}
			}
		}
	}
	if blk > 0 {
		p.blksize = blk
	}
	if win > 0 {
		p.negotiated = true
		p.window = max(1, min(win, maxWindowBytes/p.blksize))
	} else {
		p.window = max(1, min(p.window, maxWindowBytes/p.blksize))
	}
	for i, o := range accepted {
		switch o.name {
		case "blksize":
			accepted[i].value = strconv.Itoa(p.blksize)
		case "windowsize":
			accepted[i].value = strconv.Itoa(p.window)
		}
	}
	p.oack = accepted
	return p
}

// sender sends one file to one client: a sliding window of blocks with
// cumulative acknowledgements (an ACK for block n acknowledges every block up
// to n, RFC 7440) and go-back-N retransmission.
//
// With a client that negotiated windowsize W, the server sends W blocks and
// the client acknowledges the last one, or the last block it received in
// order when one was lost: every ACK starts the next window right after the
// block it names. A client that did not negotiate acknowledges every block
// (RFC 1350 lockstep); the server keeps up to SendAhead blocks in flight,
// slides the window by one per ACK and only goes back on its own timeout,
// never on a duplicate ACK (no Sorcerer's Apprentice syndrome). A timeout
// halves that send-ahead window (down to lockstep) and every window's worth
// of acknowledged blocks widens it by one again, so a client or NIC that
// drops bursts converges to what it can take.
//
// Until the client has acknowledged something (the OACK, or block 1) the
// request may be forged with a victim's address: only the first packet is
// sent, resent at most maxUnprovenResends times after p.timeout each, with
// no backoff. The window opens with the first acknowledgement.
type sender struct {
	t   transport
	r   io.Reader
	ctx context.Context
	p   params

	retries  int
	unproven int    // resends of the first packet allowed before an acknowledgement
	proven   bool   // the client has acknowledged the OACK or a block
	cwnd     int    // current blocks in flight (≤ p.window)
	grown    int    // blocks acknowledged since cwnd last grew
	wentBack uint64 // base at which a duplicate ACK last sent the window again
	flight   int    // most blocks in flight at once

	ring    [][]byte // p.window slots of 4+blksize bytes: block n in slot (n-1) % window
	base    uint64   // first block not yet acknowledged (blocks count from 1)
	next    uint64   // next block to transmit
	maxSent uint64   // highest block transmitted
	resend  uint64   // after a timeout: retransmit up to this block, whatever cwnd allows
	read    uint64   // blocks read from r so far
	last    uint64   // final block (shorter than blksize), 0 until read
	bytes   int64    // file bytes read
	resent  int      // blocks sent more than once
}

func newSender(ctx context.Context, t transport, r io.Reader, p params, retries int) *sender {
	return &sender{t: t, r: r, ctx: ctx, p: p, retries: retries, unproven: min(retries, maxUnprovenResends)}
}

// slot is the ring entry of block n.
func (x *sender) slot(n uint64) *[]byte { return &x.ring[(n-1)%uint64(len(x.ring))] }

// clientError is an ERROR packet received from the client.
type clientError struct {
	code uint16
	msg  string
}

func (e *clientError) Error() string {
	return fmt.Sprintf("client sent error %d: %q", e.code, truncate(e.msg))
}

func parseClientError(pkt []byte) *clientError {
	e := &clientError{code: binary.BigEndian.Uint16(pkt[2:])}
	msg := pkt[4:]
	for i, b := range msg {
		if b == 0 {
			msg = msg[:i]
			break
		}
	}
	e.msg = string(msg)
	return e
}

// wait is the time to wait for an acknowledgement after the attempt-th
// consecutive timeout: T, 2T, 4T, then 5T, with a little jitter after a
// timeout so that clients that lost packets together do not retry together.
func wait(t time.Duration, attempt int) time.Duration {
	if attempt == 0 {
		return t
	}
	return t*time.Duration(min(1<<min(attempt, 3), 5)) + rand.N(t/8+1)
}

// handshake sends the OACK and waits for its acknowledgement (ACK 0), which
// proves the client asked. Until then the OACK is resent at most
// x.unproven times, after p.timeout each.
func (x *sender) handshake(oack []byte) error {
	buf := make([]byte, 1500)
	for attempt := 0; attempt <= x.unproven; attempt++ {
		if err := x.ctx.Err(); err != nil {
			return err
		}
		if err := x.t.send([][]byte{oack}); err != nil {
			return err
		}
		deadline := time.Now().Add(x.p.timeout)
		for {
			n, err := x.t.recv(buf, deadline)
			if errors.Is(err, errTimeout) {
				break
			}
			if err != nil {
				return err
			}
			pkt := buf[:n]
			if n < 4 {
				continue
			}
			switch binary.BigEndian.Uint16(pkt) {
			case opACK:
				if binary.BigEndian.Uint16(pkt[2:]) == 0 {
					x.proven = true
					return nil
				}
			case opERROR:
				return parseClientError(pkt)
			}
		}
	}
	return fmt.Errorf("%w: no acknowledgement of the options after %d attempts", ErrTimeout, x.unproven+1)
}

// fill reads block n (n == x.read+1) into its ring slot.
func (x *sender) fill(n uint64) error {
	slot := (*x.slot(n))[:4+x.p.blksize]
	binary.BigEndian.PutUint16(slot, opDATA)
	binary.BigEndian.PutUint16(slot[2:], uint16(n))
	got, err := io.ReadFull(x.r, slot[4:4+x.p.blksize])
	switch {
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		x.last = n
	case err != nil:
		return err
	}
	*x.slot(n) = slot[:4+got]
	x.read = n
	x.bytes += int64(got)
	return nil
}

// run sends the whole file; it returns nil once the last block is
// acknowledged.
func (x *sender) run() error {
	x.ring = make([][]byte, x.p.window)
	for i := range x.ring {
		x.ring[i] = make([]byte, 4+x.p.blksize)
	}
	x.cwnd = x.p.window
	if !x.proven {
		x.cwnd = 1 // nothing sent ahead to an address that may not have asked
	}
	x.base, x.next = 1, 1
	sendBuf := make([][]byte, 0, x.p.window)
	buf := make([]byte, 1500)
	attempt := 0
	// The deadline is set when the transfer starts, on progress and on a
	// timeout, never by a duplicate acknowledgement: a client repeating
	// one cannot keep the transfer alive.
	var deadline time.Time
	rearm := true
	for {
		if err := x.ctx.Err(); err != nil {
			return err
		}
		// Transmit what the window allows.
		pkts := sendBuf[:0]
		for {
			limit := max(x.base+uint64(x.cwnd)-1, x.resend)
			if x.last != 0 {
				limit = min(limit, x.last)
			}
			if x.next > limit {
				break
			}
			if x.next > x.read {
				if err := x.fill(x.next); err != nil {
					return fmt.Errorf("reading: %w", err)
				}
				continue // last may be known now
			}
			pkts = append(pkts, *x.slot(x.next))
			if x.next <= x.maxSent {
				x.resent++
			}
			x.maxSent = max(x.maxSent, x.next)
			x.next++
		}
		if len(pkts) > 0 {
			if err := x.t.send(pkts); err != nil {
				return err
			}
			x.flight = max(x.flight, int(x.next-x.base))
		}
		if rearm {
			switch {
			case !x.proven:
				deadline = time.Now().Add(x.p.timeout)
			default:
				deadline = time.Now().Add(wait(x.p.timeout, attempt))
			}
			rearm = false
		}

		n, err := x.t.recv(buf, deadline)
		if errors.Is(err, errTimeout) {
			attempt++
			if !x.proven && attempt > x.unproven {
				return fmt.Errorf("%w: block 1 never acknowledged after %d attempts", ErrTimeout, attempt)
			}
			if attempt > x.retries {
				return fmt.Errorf("%w: block %d unacknowledged after %d attempts", ErrTimeout, x.base, attempt)
			}
			rearm = true
			// Go back and resend everything outstanding, not just what
			// the shrunken window allows: when acknowledgements rather
			// than blocks were lost, a lockstep client has the blocks
			// and answers only the last one it got (curl, tftp-hpa) or
			// the ones it gets again (GRUB), so that block must be
			// among those resent.
			x.next, x.resend = x.base, x.maxSent
			if !x.p.negotiated {
				x.cwnd = max(1, x.cwnd/2)
				x.grown = 0
			}
			continue
		}
		if err != nil {
			return err
		}
		if n < 4 {
			continue
		}
		pkt := buf[:n]
		switch binary.BigEndian.Uint16(pkt) {
		case opERROR:
			return parseClientError(pkt)
		case opACK:
		default:
			continue
		}
		// The 16-bit block number wraps (the block after 65535 is 0):
		// take the acknowledged block in [base-1, maxSent].
		idx := x.base - 1 + uint64(binary.BigEndian.Uint16(pkt[2:])-uint16(x.base-1))
		if idx > x.maxSent {
			continue // stale or bogus
		}
		if idx < x.base {
			// A duplicate of the last acknowledgement. A windowsize
			// client sends it when it lost a block or timed out: resend
			// from there, once per position (a client repeating it gets
			// nothing more until the timeout). A lockstep client sends
			// it for a duplicate block it got; ignoring it avoids
			// Sorcerer's Apprentice.
			if x.p.negotiated && x.wentBack != x.base {
				x.wentBack = x.base
				x.next = x.base
			}
			continue
		}
		acked := idx - x.base + 1
		x.base = idx + 1
		attempt = 0
		rearm = true
		if !x.proven {
			x.proven = true
			x.cwnd = x.p.window
		}
		if x.last != 0 && idx == x.last {
			return nil
		}
		if x.p.negotiated {
			x.next = x.base
		} else {
			x.next = max(x.next, x.base)
			if x.cwnd < x.p.window {
				x.grown += int(acked)
				if x.grown >= x.cwnd {
					x.cwnd++
					x.grown = 0
				}
			}
		}
	}
}

// netasciiReader converts a file to netascii (RFC 764 as used by RFC 1350):
// LF becomes CR LF and CR becomes CR NUL.
type netasciiReader struct {
	r   io.Reader
	in  []byte
	out []byte
	err error
}

func (n *netasciiReader) Read(p []byte) (int, error) {
	for len(n.out) == 0 {
		if n.err != nil {
			return 0, n.err
		}
		if n.in == nil {
			n.in = make([]byte, 4096)
		}
		k, err := n.r.Read(n.in)
		n.err = err
		out := n.out[:0]
		for _, b := range n.in[:k] {
			switch b {
			case '\n':
				out = append(out, '\r', '\n')
			case '\r':
				out = append(out, '\r', 0)
			default:
				out = append(out, b)
			}
		}
		n.out = out
	}
	k := copy(p, n.out)
	n.out = n.out[k:]
	return k, nil
}
