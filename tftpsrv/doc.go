// Package tftpsrv is a read-only TFTP server over io/fs, with dynamic files.
//
// It serves stage 3 of a network boot: firmware fetches GRUB's network image,
// GRUB fetches its modules and first-stage grub.cfg. A [Server] answers read
// requests from a [Handler] (generated content such as grub.cfg; the client
// address is in the [Request]) and falls back to an [io/fs.FS] for static
// files. Write requests are refused. The transfer engine is
// github.com/pin/tftp/v3 (v3.1.0); this package adds path safety, the
// Handler/FS split, context-based shutdown, hooks, counters and logging.
//
//	fsys, err := tftpsrv.DirFS("/srv/tftp") // confined with os.OpenRoot
//	srv := &tftpsrv.Server{FS: fsys, Handler: grubHandler, Logger: logger}
//	err = srv.ListenAndServe(ctx, ":69")
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
// swapped in between check and open cannot escape either.
//
// # Options and what pin/tftp can and cannot do
//
//   - blksize (RFC 2348): honoured up to the interface MTU minus headers
//     (pin/tftp learns the MTU from IP_PKTINFO) and Server.MaxBlockSize.
//     GRUB asks for ≤ 1024, firmware often 1468 or 512.
//   - tsize (RFC 2349): answered with the file size, or with the length of
//     the Handler's answer. pin/tftp leaves tsize out of the OACK when the
//     size is 0; clients then proceed without it.
//   - timeout (RFC 2349): not negotiated (pin/tftp drops unknown options
//     from the OACK; the client keeps its own timeout). The server side uses
//     Server.Timeout with exponential backoff between retransmissions.
//   - windowsize (RFC 7440): not supported by pin/tftp. Its experimental
//     "sender anticipate" mode (Server.Anticipate = N, N ≤ 60) sends N blocks
//     back to back and then waits until every one of them is acknowledged,
//     in order, starting with the window's first block. Nothing is
//     negotiated, so it works with lockstep clients (they acknowledge each
//     block) and roughly doubles throughput on loopback (see below). But it
//     is not loss-safe: when a block in the middle of a window is lost, the
//     client has already acknowledged the blocks before it and never does
//     again, pin/tftp keeps resending the whole window waiting for that
//     first acknowledgement, and the transfer fails after Retries
//     (TestAnticipateLossCharacterization reproduces it; one boot-storm run
//     lost 22 of 200 transfers this way). Keep it off (the default) unless
//     the network never drops packets.
//   - Error packets always carry TFTP error code 1 ("file not found"):
//     pin/tftp hard-codes it. The message says what happened ("access
//     violation: file name refused", "access violation: read-only server",
//     "file not found") without echoing the requested name.
//   - SinglePort answers from the listening port (for firewalls allowing
//     only port 69). It is 3–5× slower: pin/tftp's single-port loop calls
//     net.InterfaceByIndex, a netlink dump of all interfaces, for every
//     packet (55% of the server's CPU in pprof) and hands each packet to
//     its transfer through a channel under one lock. It also keeps a dead
//     table entry for the source of any stray non-request packet, so a
//     later request from that same address and port is never answered and
//     junk from many ports grows the table
//     (TestSinglePortStrayPacketCharacterization). Prefer the default mode.
//   - Other pin/tftp details this package works around: requests read
//     before IP_PKTINFO is enabled, or from a conn that is not a
//     *net.UDPConn, are limited to 512-byte blocks (Serve enables
//     IP_PKTINFO before starting); in single-port mode pin/tftp's Shutdown
//     does not close the socket (Serve does).
//
// At most MaxTransfers (default 1000) transfers run at once; further
// requests are answered "server busy" at once and counted (Stats.Busy), so a
// request flood cannot pile up sockets and goroutines for the ~18×Timeout a
// vanished client holds them.
//
// Serve returns when its context ends: it closes the socket, aborts
// transfers at their next block and waits for all of them, so no goroutine
// outlives it. A transfer whose client vanished ends when its
// retransmissions run out (about 18×Timeout with the default 5 retries).
//
// # Measurements
//
// internal/bench/tftp.sh, 2026-11-25 15:09 UTC, 2 shared cores (gVisor
// kernel 6.18, load average 12–28 from other jobs during the run), all on
// loopback inside a private network namespace. 64 MiB file, MB/s = 10^6
// bytes/s; boot storm = 200 concurrent curl clients fetching a 1.5 MiB file
// with blksize 1468; peak RSS is the server's VmHWM.
//
//	server           tftp-hpa  curl-1024  curl-1468  storm fails  storm s  storm MB/s  peak RSS KiB
//	metalboot            10.7       29.2       35.6            0   11.484        27.4         15884
//	metalboot-a16        23.4       46.0       62.3            0    6.539        48.1         22756
//	metalboot-1port       2.4        5.6        8.2            0   46.583         6.8         19356
//	tftpd-hpa             9.8       23.3       42.8            0   16.170        19.5          2808
//	dnsmasq              12.1       27.9       28.8            0    9.582        32.8          4840
//
//	metalboot vs tftpd-hpa:        tftp-hpa 1.10x  curl-1024 1.25x  curl-1468 0.83x  storm 1.41x
//	metalboot vs dnsmasq:          tftp-hpa 0.88x  curl-1024 1.05x  curl-1468 1.23x  storm 0.83x
//	metalboot-a16 vs tftpd-hpa:    tftp-hpa 2.40x  curl-1024 1.97x  curl-1468 1.45x  storm 2.47x
//	metalboot-a16 vs dnsmasq:      tftp-hpa 1.93x  curl-1024 1.65x  curl-1468 2.16x  storm 1.47x
//	metalboot-1port vs tftpd-hpa:  tftp-hpa 0.24x  curl-1024 0.24x  curl-1468 0.19x  storm 0.35x
//
// (metalboot = lockstep default, -a16 = Anticipate 16, -1port = SinglePort;
// tftp-hpa sends no options, i.e. 512-byte blocks.) A second run ending
// 15:21 (load average 29; for its last minutes another copy of the script,
// started by someone else, ran at the same time) gave, against tftpd-hpa: lockstep tftp-hpa 1.65x,
// curl-1024 0.64x, curl-1468 0.92x, storm 1.75x (0 failures, peak RSS
// 16 MiB vs 2.6 MiB); Anticipate 16 2.94x / 1.86x / 1.95x, storm 2.12x
// (0 failures); single-port 0.20–0.32x. An earlier run gave lockstep
// 0.47–1.42x and Anticipate 16 lost 22 of 200 storm transfers: on this
// loaded machine single runs vary by ±30% or more, so read the ratios as
// "lockstep ≈ tftpd-hpa on bulk, ahead in the storm".
// Lockstep metalboot is at parity with tftpd-hpa, not 1.5× ahead: pprof
// shows 77% of its CPU in syscalls (sendto 44%, recvfrom+epoll 34%, file
// read 11%) and the transfer is bound by the per-block round trip, which
// pin/tftp's lockstep sender cannot shorten. Reaching ≥ 1.5× safely needs a
// windowed sender with cumulative acknowledgements (RFC 7440), i.e. a
// change to pin/tftp's anticipate code or a sender of our own. A read
// buffer in front of the file (one read per 64 KiB instead of per block)
// made no measurable difference and was left out.
package tftpsrv
