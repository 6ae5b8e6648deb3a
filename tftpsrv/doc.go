// Package tftpsrv is a read-only TFTP server over io/fs, with dynamic files.
//
// It serves stage 3 of a network boot: firmware fetches GRUB's network image,
// GRUB fetches its modules and first-stage grub.cfg. A [Server] answers read
// requests from a [Handler] (generated content such as grub.cfg; the client
// address is in the [Request]) and falls back to an [io/fs.FS] for static
// files. Write requests are refused. The transfer engine is this package's
// own (see "Transfer engine" below); github.com/pin/tftp/v3 is the client in
// its Example and tests.
//
//	fsys, err := tftpsrv.DirFS("/srv/tftp") // confined with os.OpenRoot
//	srv := &tftpsrv.Server{Addr: "10.99.0.1:69", FS: fsys, Handler: grubHandler, Logger: logger}
//	conn, err := srv.Listen(ctx) // config and bind errors, synchronously
//	go srv.Serve(ctx, conn)      // or: err = srv.ListenAndServe(ctx)
//
// The Server follows the contract shared with dhcpsrv and dnssrv, written
// down once in the documentation of package [github.com/metalboot/metalboot]
// ("One server contract"): the address is a field (Addr, [DefaultAddr]),
// [Server.Validate] reports every configuration mistake before anything
// binds, [Server.Listen] binds, [Server.Serve] serves a socket it never
// closes, [Server.ListenAndServe] is both and closes what it opened, every
// DefaultX constant is what the zero value of field X does, a nil Logger
// discards, and [Server.Stats] uses the shared counter names (Malformed,
// SendErrors, HandlerErrors).
//
// # Path rules
//
// One leading "/" is stripped (firmware sends both "/grub/core.efi" and
// "grub/core.efi"), then the name must satisfy [io/fs.ValidPath]. "..",
// ".", empty elements, NUL, backslashes, control characters, invalid UTF-8
// and names over [MaxPathLen] bytes are refused with a TFTP error and a log
// line ([CleanPath]). Symbolic links are resolved link by link (for file
// systems implementing [io/fs.ReadLinkFS], such as os.DirFS) and any link that
// is absolute or leads out of the tree is refused; [DirFS] additionally
// confines every open to the directory in the kernel (os.Root), so a link
// swapped in between check and open cannot escape either. Only regular files
// are served: the name is checked with [io/fs.Stat] before it is opened, and
// a directory, FIFO, socket or device is refused ([ErrNotRegular], "access
// violation") with the kind of file in the log line. Opening a FIFO would
// block until a writer came, holding an OS thread per request; os.DirFS,
// DirFS and fstest.MapFS answer Stat without opening the file (an FS that
// does not implement [io/fs.StatFS] is opened to be stat'ed).
//
// # Options
//
//   - blksize (RFC 2348): 8 to 65464, lowered to fit one IP packet on the
//     interface the request arrived on (its MTU, learnt from IP_PKTINFO;
//     1468 when unknown) and to Server.MaxBlockSize. GRUB asks for ≤ 1024,
//     firmware often 1468 or 512. Below 8 the option is ignored.
//   - tsize (RFC 2349): answered with the file size, or with the length of
//     the Handler's answer. A zero size is left out of the OACK: curl
//     rejects "tsize 0" as invalid. Not offered in netascii mode, where the
//     converted length is not known in advance.
//   - timeout (RFC 2349): 1 s to Server.MaxTimeout (default 5 s, what
//     U-Boot asks for; the RFC allows up to 255), echoed and used as this
//     transfer's retransmission timeout. Other values are refused: left out
//     of the OACK, the RFC allows no other answer, and clients then keep
//     their own timeout; the transfer uses Server.Timeout.
//   - windowsize (RFC 7440): 1 to Server.MaxWindow (default 64), lowered so
//     that windowsize × blksize stays within 1 MiB per transfer.
//   - Unknown options are ignored; a request whose options are all refused
//     gets no OACK and its data starts at once (RFC 2347).
//   - Modes: octet, and netascii (LF becomes CR LF, CR becomes CR NUL;
//     tftp-hpa's client asks for netascii unless told "binary").
//   - Errors carry RFC 1350 codes: 1 file not found, 2 access violation
//     (refused names, escaping links, non-regular files, writes), 0
//     otherwise ("server busy", "server error"). The message never echoes
//     the requested name.
//
// # Transfer engine
//
// A transfer keeps a sliding window of blocks in flight. Acknowledgements
// are cumulative (an ACK for block n covers every block up to n, as in
// RFC 7440), and a timeout goes back to the first unacknowledged block
// (go-back-N) with backoff: the waits are Timeout, 2×, 4×, then 5×, and the
// transfer fails after Retries timeouts without progress.
//
// Nothing is sent ahead before the client has acknowledged something. A
// request's source address can be forged, so until the client acknowledges
// the OACK (ACK 0) or, without options, block 1, the transfer has one packet
// in flight, resends it at most twice after Timeout each (no backoff), and
// then gives up: a forged request makes the server send at most three
// packets (1.5 KB of block 1 for a request of some 16 bytes without options,
// three OACKs when it has options) and frees its slot after 3×Timeout (3 s
// by default, 15 s with a "timeout 5" option). Before this bound such a
// request drew 48 blocks (24 KB) over 22 s, and with "timeout 255" held its
// slot for about 93 minutes (TestSilentClientAmplification). The window opens with that first acknowledgement,
// which costs a client without options one round trip.
//
//   - A client that negotiated windowsize W gets W blocks and acknowledges
//     the last one, or the last block it received in order when one was
//     lost; every ACK starts the next window right after the block it names.
//     A repeated ACK resends the window once; further repeats of the same
//     ACK are ignored until the timeout, and no repeated ACK pushes the
//     timeout back, so repeating one ACK can neither amplify nor keep a
//     transfer alive (TestDuplicateAcksDoNotKeepTransferAlive).
//   - A client that did not negotiate acknowledges every block (RFC 1350
//     lockstep). Waiting for each acknowledgement costs one round trip per
//     block, which is all tftpd-hpa and dnsmasq do, so the server keeps up
//     to Server.SendAhead blocks (default 8) in flight and slides the window
//     by one on each ACK. A lockstep client ignores a block ahead of the one
//     it expects (tftp-hpa and curl do; the tests' scripted client does the
//     same), so nothing needs negotiating; OVMF, SeaBIOS's iPXE and GRUB
//     load through it in the labserver e2e test. Duplicate ACKs
//     never trigger a retransmission (no Sorcerer's Apprentice syndrome);
//     only a timeout does, and it also halves the send-ahead window, which
//     grows by one per window of acknowledged blocks again: a client or NIC
//     that drops bursts settles at what it can take, down to lockstep.
//     A timeout resends everything outstanding, not only what the halved
//     window allows: when acknowledgements were lost rather than blocks, a
//     lockstep client holds the blocks and answers only a resent copy of
//     the last one it got (curl, tftp-hpa), so that copy must be among those
//     resent (TestSendAheadRecoversAckLoss). SendAhead = 1 is strict
//     lockstep.
//   - Files are read through a 32 KiB buffer; a window is sent with one
//     sendmmsg(2).
//   - Each transfer answers from its own socket, connected to the client
//     (a new transfer ID, RFC 1350), bound to the address the request was
//     sent to. A client that goes away (ICMP port unreachable) ends its
//     transfer at once.
//   - SinglePort answers from the listening port and tells transfers apart
//     by the client's address and port; a stray packet that starts no
//     transfer is counted (Stats.Malformed) and leaves nothing behind.
//     The server's transfer ID is then the well-known port, so an
//     acknowledgement is no proof that the client asked: one forged from
//     the address a forged request named opens the window towards it. With
//     per-transfer sockets the forger would have to guess the ephemeral
//     port. Use SinglePort only where source addresses cannot be forged.
//     Every transfer's acknowledgements then share one socket, so Serve asks
//     for a 4 MiB receive buffer on it (capped by net.core.rmem_max): with
//     Linux's default 208 KiB a 200-client storm dropped acknowledgements and
//     took 20 s instead of 7 s.
//   - A client that ends a transfer with an ERROR packet (firmware does, on
//     purpose, after reading tsize from the OACK) is counted in
//     Stats.Aborted, not Stats.Failed.
//   - Malformed packets on the listening port are counted and dropped
//     without an answer, so a forged source cannot turn the server into a
//     reflector.
//
// TestSendAheadRecoversLoss, TestSendAheadRandomLoss and TestWindowsize lose
// blocks at every position of a window with lockstep and windowsize
// clients; the interop tests fetch every file with tftp-hpa, atftp and curl
// in each mode; the labserver e2e boots OVMF and SeaBIOS through it.
//
// Why not github.com/pin/tftp/v3 (the engine until 2026-11-25): it has no
// windowsize, its lockstep sender measured at 0.83–1.33× tftpd-hpa, its
// "sender anticipate" window lost transfers when a block in the middle of a
// window was dropped (it waited for an acknowledgement a lockstep client had
// already sent), it sent every error as code 1, and its single-port mode was
// 3–5× slower (a netlink interface dump per packet) and kept a dead table
// entry for the source of any stray packet, so that address was never
// served again.
//
// At most MaxTransfers (default 1000) transfers run at once, and at most
// MaxTransfersPerClient (default 16) for one client address; further
// requests are answered "server busy" at once and counted (Stats.Busy,
// Stats.ClientLimited), so a request flood cannot pile up sockets and
// goroutines, and a flood from one address (or naming one victim) cannot
// take the slots of the others (TestFloodFromOneSource). A client that
// vanishes after acknowledging holds its slot for at most ~22×Timeout.
//
// Serve returns when its context ends: it stops reading the socket (and
// leaves it open: the caller opened it), sends each transfer's client an
// ERROR ("server shutting down") and waits for all of them, so no
// goroutine outlives it.
//
// # Measurements
//
// See internal/bench/README.md for the method and the latest table
// (internal/bench/tftp.sh: a 64 MiB file fetched by tftp-hpa, curl and
// atftp, and a 200-client boot storm, beside tftpd-hpa and dnsmasq).
package tftpsrv
