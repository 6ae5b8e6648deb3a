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
//     back to back and then waits until every one of them is acknowledged in
//     order. Nothing is negotiated, so it works with any lockstep client
//     (they acknowledge each block), but a single lost block stalls the
//     window for a full Timeout before the whole window is resent.
//   - Error packets always carry TFTP error code 1 ("file not found"):
//     pin/tftp hard-codes it. The message says what happened ("access
//     violation: file name refused", "access violation: read-only server",
//     "file not found") without echoing the requested name.
//   - SinglePort answers from the listening port (for firewalls allowing
//     only port 69); pin/tftp then demultiplexes every packet under one
//     lock, which is markedly slower.
//
// Serve returns when its context ends: it closes the socket, aborts
// transfers at their next block and waits for all of them, so no goroutine
// outlives it. A transfer whose client vanished ends when its
// retransmissions run out (about 18×Timeout with the default 5 retries).
//
// # Measurements
//
// See the "Benchmark" section below (filled from internal/bench/tftp.sh).
package tftpsrv
