package dhcpsrv

import (
	"bufio"
	"cmp"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/metalboot/metalboot/dhcpsrv/hwaddr"
	"github.com/metalboot/metalboot/internal/files"
)

// compactMin is the number of file records below which the journal is
// never compacted while open (a variable for tests).
var compactMin = 4096

// Journal file names inside the directory given to OpenJournal.
const (
	journalName = "leases.journal"
	journalTmp  = "leases.journal.tmp"
	journalLock = "leases.lock"
)

// Journal is the default [LeaseStore]: an in-memory index backed by an
// append-only file (leases.journal) in a directory.
//
// Every write appends one self-checking line (CRC-32 + JSON) and is durable
// (fsync) before CompareAndSwap returns, so the server only ACKs what is on
// disk. Concurrent writers share one fsync (group commit). A process killed
// at any moment leaves at worst a torn last line, which OpenJournal drops.
// The file is rewritten as a snapshot (write temporary file, fsync, rename,
// fsync directory) when opened and when it holds four times more records
// than live leases. An exclusive flock keeps a second process from opening
// the same directory.
//
// A Journal made by [NewMemoryStore] keeps the same semantics without a file.
type Journal struct {
	dir  string
	lock *os.File

	mu      sync.Mutex // guards the index, buf, written, records, err
	byIP    map[netip.Addr]Lease
	byMAC   map[hwaddr.MAC][]netip.Addr
	rev     uint64
	buf     []byte // encoded records not yet written to the file
	written uint64 // sequence number of the last record put into buf
	records int    // records in the file (after the last snapshot)
	err     error  // sticky: set when a write or fsync failed
	closed  bool

	syncMu  sync.Mutex // serialises file writes, fsync and snapshots
	f       *os.File
	durable uint64 // sequence number of the last record known on disk
	spare   []byte

	// With a SyncInterval (under syncMu): inFile is the sequence number of
	// the last record written to the file, fsynced or not; syncDue that an
	// fsync is scheduled.
	syncInterval time.Duration
	inFile       uint64
	syncDue      bool

	recovery JournalRecovery // what replay dropped; set once by OpenJournal
}

type record struct {
	Op       string     `json:"op"` // "put", "del" or "rev"
	Rev      uint64     `json:"rev"`
	IP       netip.Addr `json:"ip,omitzero"`
	MAC      hwaddr.MAC `json:"mac,omitzero"`
	Hostname string     `json:"host,omitempty"`
	UUID     string     `json:"uuid,omitempty"`
	Arch     Arch       `json:"arch,omitempty"`
	Expires  int64      `json:"exp,omitempty"` // Unix nanoseconds
	State    LeaseState `json:"state,omitempty"`
}

// NewMemoryStore returns a lease store with the Journal's semantics that
// keeps nothing on disk (leases are lost when the process ends).
func NewMemoryStore() *Journal {
	return &Journal{byIP: map[netip.Addr]Lease{}, byMAC: map[hwaddr.MAC][]netip.Addr{}}
}

// OpenJournal opens (creating dir and the journal if needed) the lease
// journal in dir (the file [JournalPath](dir)), replays it and compacts
// it.
//
// Replay is strict, because a journal taken as empty would hand out
// addresses that are still leased: the only damage tolerated is a torn
// last record, an incomplete final line with no newline after it, which
// is what a crash in the middle of an append leaves (that record was
// never fsynced, so never ACKed). It is dropped and reported by
// [Journal.Recovery] (a [Server] using the journal logs it as a warning).
// Any other damage (a record that fails its checksum or does not decode,
// a file with no complete record at all, zeros, garbage) makes OpenJournal
// fail with a [*JournalError] that wraps [ErrCorrupt] and names the file,
// the byte offset and the record, and leaves the file byte for byte as it
// was. The operator then inspects it and may call [MoveAside] to start
// with no leases.
//
// A lease field that does not pass validation (a host name failing
// [ValidHostname] or a UUID failing [ValidUUID], as an older version may
// have written them) is removed and counted in [Journal.Recovery]; the
// lease itself is kept.
func OpenJournal(dir string) (*Journal, error) {
	return OpenJournalOptions(dir, JournalOptions{})
}

// JournalOptions tune a Journal; the zero value is OpenJournal's.
type JournalOptions struct {
	// SyncInterval chooses what a write waits for before CompareAndSwap
	// returns, and so what an ACK promises:
	//
	//   - 0 (the default): the record is on disk (fsync; concurrent
	//     writers share one). Nothing ACKed is lost, even by a power cut.
	//   - > 0: the record is written to the file (write(2)), which a
	//     killed or crashed process cannot lose, and fsynced within
	//     SyncInterval. A power cut or kernel crash can lose the leases
	//     ACKed in the last interval: the durability of Kea's memfile and
	//     of dnsmasq, which never fsync their lease files. It costs a
	//     fraction of the CPU time per lease (internal/bench/dhcp.sh).
	//
	// Close fsyncs what is pending in either mode.
	SyncInterval time.Duration
}

// OpenJournalOptions is OpenJournal with options.
func OpenJournalOptions(dir string, o JournalOptions) (*Journal, error) {
	if o.SyncInterval < 0 {
		return nil, fmt.Errorf("dhcpsrv: journal sync interval %v is negative", o.SyncInterval)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("dhcpsrv: journal directory: %w", err)
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	j := NewMemoryStore()
	j.dir, j.lock, j.syncInterval = dir, lock, o.SyncInterval
	if err := j.replay(); err != nil {
		lock.Close()
		return nil, err
	}
	j.syncMu.Lock()
	err = j.snapshotLocked()
	j.syncMu.Unlock()
	if err != nil {
		lock.Close()
		return nil, err
	}
	return j, nil
}

// lockDir takes the exclusive lock of the journal directory dir.
func lockDir(dir string) (*os.File, error) {
	lock, err := os.OpenFile(filepath.Join(dir, journalLock), os.O_CREATE|os.O_RDWR, 0o640)
	if err != nil {
		return nil, fmt.Errorf("dhcpsrv: journal lock: %w", err)
	}
	if err := lockFile(lock); err != nil {
		lock.Close()
		return nil, fmt.Errorf("dhcpsrv: journal %s is in use by another process: %w", dir, err)
	}
	return lock, nil
}

// JournalPath returns the path of the journal file that OpenJournal(dir)
// reads and writes.
func JournalPath(dir string) string { return filepath.Join(dir, journalName) }

func (j *Journal) replay() error {
	_ = os.Remove(filepath.Join(j.dir, journalTmp)) // an interrupted snapshot; the journal itself is intact
	path := JournalPath(j.dir)
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("dhcpsrv: open journal: %w", err)
	}
	defer f.Close()
	return j.replayFrom(path, f)
}

// maxRecordLen bounds one journal line; a longer one is corrupt.
const maxRecordLen = 1 << 16

// replayFrom applies the records read from r (the journal file called
// name) to the empty index; see OpenJournal for what it accepts.
func (j *Journal) replayFrom(name string, r io.Reader) error {
	j.recovery = JournalRecovery{File: name}
	br := bufio.NewReaderSize(r, 1<<16)
	var off int64
	complete := 0
	for {
		line, err := br.ReadBytes('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("dhcpsrv: read journal %s: %w", name, err)
		}
		if err != nil { // io.EOF: line has no newline
			if len(line) == 0 {
				return nil
			}
			if complete == 0 {
				// A snapshot (written whole, fsynced, renamed into
				// place) always starts the file with a complete record,
				// so this is no torn append.
				return &JournalError{File: name, Offset: off, Record: clip(line),
					Err: errors.New("no complete record (no newline in the file)")}
			}
			j.recovery.TornOffset, j.recovery.TornBytes, j.recovery.TornRecord = off, len(line), clip(line)
			return nil
		}
		rec, derr := decodeRecord(line)
		if derr != nil {
			return &JournalError{File: name, Offset: off, Record: clip(line), Err: derr}
		}
		if rec.Op == "put" {
			j.checkRecord(&rec, off)
		}
		j.apply(rec)
		complete++
		off += int64(len(line))
	}
}

// checkRecord removes a host name or UUID that fails validation from a
// replayed record and notes it in j.recovery.
func (j *Journal) checkRecord(rec *record, off int64) {
	l, badHost, badUUID := checkLease(Lease{Hostname: rec.Hostname, UUID: rec.UUID})
	note := func(field, value string) {
		if len(j.recovery.Dropped) < maxDropped {
			j.recovery.Dropped = append(j.recovery.Dropped, DroppedField{Offset: off, IP: rec.IP, Field: field, Value: value})
		}
	}
	if badHost {
		j.recovery.BadHostnames++
		note("hostname", rec.Hostname)
	}
	if badUUID {
		j.recovery.BadUUIDs++
		note("uuid", rec.UUID)
	}
	rec.Hostname, rec.UUID = l.Hostname, l.UUID
}

// decodeRecord parses and checks one line "<crc32 hex> <json>\n".
func decodeRecord(line []byte) (record, error) {
	var rec record
	if len(line) > maxRecordLen {
		return rec, fmt.Errorf("record longer than %d bytes", maxRecordLen)
	}
	if len(line) < 10 || line[len(line)-1] != '\n' || line[8] != ' ' {
		return rec, errors.New("not a checksummed record")
	}
	var sum [4]byte
	if _, err := hex.Decode(sum[:], line[:8]); err != nil {
		return rec, errors.New("not a checksummed record")
	}
	body := line[9 : len(line)-1]
	if crc32.ChecksumIEEE(body) != uint32(sum[0])<<24|uint32(sum[1])<<16|uint32(sum[2])<<8|uint32(sum[3]) {
		return rec, errors.New("checksum mismatch")
	}
	if err := json.Unmarshal(body, &rec); err != nil {
		return rec, fmt.Errorf("undecodable record: %w", err)
	}
	switch rec.Op {
	case "put", "del":
		if !rec.IP.Is4() {
			return rec, fmt.Errorf("%s record without an IPv4 address", rec.Op)
		}
		if rec.Rev == 0 {
			return rec, fmt.Errorf("%s record without a revision", rec.Op)
		}
	case "rev":
	default:
		return rec, fmt.Errorf("unknown operation %q", rec.Op)
	}
	if rec.Op == "put" {
		if rec.State > StateDeclined {
			return rec, fmt.Errorf("unknown lease state %d", rec.State)
		}
		if rec.State != StateDeclined && rec.MAC.IsZero() {
			return rec, fmt.Errorf("%s lease without a MAC", rec.State)
		}
	}
	return rec, nil
}

func appendLine(dst []byte, rec record) []byte {
	body, err := json.Marshal(rec)
	if err != nil { // cannot happen: all fields marshal
		panic(err)
	}
	dst = fmt.Appendf(dst, "%08x ", crc32.ChecksumIEEE(body))
	dst = append(dst, body...)
	return append(dst, '\n')
}

// apply updates the in-memory index; j.mu held (or single-threaded replay).
func (j *Journal) apply(rec record) {
	j.rev = max(j.rev, rec.Rev)
	switch rec.Op {
	case "put":
		j.remove(rec.IP)
		l := Lease{IP: rec.IP, MAC: rec.MAC, Hostname: rec.Hostname, UUID: rec.UUID, Arch: rec.Arch,
			Expires: time.Unix(0, rec.Expires), State: rec.State, Rev: rec.Rev}
		j.byIP[rec.IP] = l
		if !l.MAC.IsZero() {
			j.byMAC[l.MAC] = append(j.byMAC[l.MAC], l.IP)
		}
	case "del":
		j.remove(rec.IP)
	}
	j.records++
}

func (j *Journal) remove(ip netip.Addr) {
	old, ok := j.byIP[ip]
	if !ok {
		return
	}
	delete(j.byIP, ip)
	ips := slices.DeleteFunc(j.byMAC[old.MAC], func(a netip.Addr) bool { return a == ip })
	if len(ips) == 0 {
		delete(j.byMAC, old.MAC)
	} else {
		j.byMAC[old.MAC] = ips
	}
}

func toRecord(op string, l Lease) record {
	return record{Op: op, Rev: l.Rev, IP: l.IP, MAC: l.MAC, Hostname: l.Hostname, UUID: l.UUID,
		Arch: l.Arch, Expires: l.Expires.UnixNano(), State: l.State}
}

// Get implements LeaseStore; ctx is not used (the index is in memory).
func (j *Journal) Get(_ context.Context, ip netip.Addr) (Lease, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	l, ok := j.byIP[ip]
	if !ok {
		return Lease{}, ErrNotFound // unwrapped: the pool scan calls this a lot
	}
	return l, nil
}

// ByMAC implements LeaseStore; ctx is not used.
func (j *Journal) ByMAC(_ context.Context, mac hwaddr.MAC) (Lease, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	var best Lease
	for _, ip := range j.byMAC[mac] {
		if l := j.byIP[ip]; l.Rev > best.Rev {
			best = l
		}
	}
	if best.Rev == 0 {
		return Lease{}, ErrNotFound
	}
	return best, nil
}

// Leases returns every record held, ordered by IP.
func (j *Journal) Leases() ([]Lease, error) {
	j.mu.Lock()
	out := make([]Lease, 0, len(j.byIP))
	for _, l := range j.byIP {
		out = append(out, l)
	}
	j.mu.Unlock()
	slices.SortFunc(out, func(a, b Lease) int { return a.IP.Compare(b.IP) })
	return out, nil
}

// CompareAndSwap implements LeaseStore. It returns once the record is on
// disk (fsync); ctx does not interrupt that wait, so a write the caller
// gave up on is still either durable or failed, never half done.
func (j *Journal) CompareAndSwap(_ context.Context, prevRev uint64, l Lease) (Lease, error) {
	if !l.IP.Is4() {
		return Lease{}, fmt.Errorf("dhcpsrv: lease address %v is not IPv4", l.IP)
	}
	j.mu.Lock()
	if err := j.usable(); err != nil {
		j.mu.Unlock()
		return Lease{}, err
	}
	if cur := j.byIP[l.IP]; cur.Rev != prevRev {
		j.mu.Unlock()
		return Lease{}, fmt.Errorf("%w: %s is at revision %d, not %d", ErrConflict, l.IP, cur.Rev, prevRev)
	}
	j.rev++
	l.Rev = j.rev
	seq := j.log(toRecord("put", l))
	j.mu.Unlock()
	return l, j.waitDurable(seq)
}

// CompareAndDelete implements LeaseStore; like CompareAndSwap it returns
// once the deletion is on disk.
func (j *Journal) CompareAndDelete(_ context.Context, ip netip.Addr, rev uint64) error {
	j.mu.Lock()
	if err := j.usable(); err != nil {
		j.mu.Unlock()
		return err
	}
	cur, ok := j.byIP[ip]
	if !ok || cur.Rev != rev {
		j.mu.Unlock()
		return fmt.Errorf("%w: %s is at revision %d, not %d", ErrConflict, ip, cur.Rev, rev)
	}
	j.rev++
	seq := j.log(record{Op: "del", IP: ip, Rev: j.rev})
	j.mu.Unlock()
	return j.waitDurable(seq)
}

// waitsForDisk reports whether a write waits for an fsync before it
// returns (see Server.Workers).
func (j *Journal) waitsForDisk() bool { return j.dir != "" && j.syncInterval == 0 }

func (j *Journal) usable() error {
	if j.closed {
		return ErrClosed
	}
	return j.err
}

// log applies rec and queues it for the file; j.mu held.
func (j *Journal) log(rec record) uint64 {
	j.apply(rec)
	if j.dir == "" {
		return 0
	}
	j.buf = appendLine(j.buf, rec)
	j.written++
	return j.written
}

// waitDurable returns once record seq is on disk (group commit: whoever
// holds syncMu writes and fsyncs everything queued so far).
func (j *Journal) waitDurable(seq uint64) error {
	if j.dir == "" {
		return nil
	}
	j.syncMu.Lock()
	defer j.syncMu.Unlock()
	if j.durable >= seq || j.syncInterval > 0 && j.inFile >= seq {
		return nil
	}
	j.mu.Lock()
	if err := j.usable(); err != nil {
		j.mu.Unlock()
		return err
	}
	if j.records > compactMin && j.records > 4*len(j.byIP) {
		j.mu.Unlock()
		return j.snapshotLocked()
	}
	data, target := j.buf, j.written
	j.buf = j.spare[:0]
	j.mu.Unlock()

	later := j.syncInterval > 0
	err := writeAll(j.f, data)
	if err == nil && !later {
		err = j.f.Sync()
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	j.spare = data[:0]
	if err != nil {
		j.err = fmt.Errorf("dhcpsrv: journal write: %w", err)
		return j.err
	}
	if !later {
		j.durable = target
		return nil
	}
	// With a sync interval: written, and an fsync follows within it.
	j.inFile = target
	if !j.syncDue {
		j.syncDue = true
		time.AfterFunc(j.syncInterval, j.syncPending)
	}
	return nil
}

// syncPending fsyncs what waitDurable wrote with a sync interval. An error is sticky, as a
// failed write is: later writes fail, and the server stops ACKing.
func (j *Journal) syncPending() {
	j.syncMu.Lock()
	defer j.syncMu.Unlock()
	j.syncLocked()
}

// syncLocked fsyncs records written but not yet durable; syncMu held.
func (j *Journal) syncLocked() error {
	j.mu.Lock()
	j.syncDue = false
	target, closed := j.inFile, j.closed
	j.mu.Unlock()
	if closed || target <= j.durable {
		return nil
	}
	err := j.f.Sync()
	j.mu.Lock()
	defer j.mu.Unlock()
	if err != nil {
		j.err = fmt.Errorf("dhcpsrv: journal fsync: %w", err)
		return j.err
	}
	j.durable = max(j.durable, target)
	return nil
}

// snapshotLocked rewrites the journal as one record per lease; syncMu held.
func (j *Journal) snapshotLocked() error {
	j.mu.Lock()
	leases := make([]Lease, 0, len(j.byIP))
	for _, l := range j.byIP {
		leases = append(leases, l)
	}
	rev, target := j.rev, j.written
	j.buf = j.buf[:0] // everything queued is part of this snapshot
	j.mu.Unlock()

	slices.SortFunc(leases, func(a, b Lease) int { return cmp.Compare(a.Rev, b.Rev) })
	data := appendLine(nil, record{Op: "rev", Rev: rev})
	for _, l := range leases {
		data = appendLine(data, toRecord("put", l))
	}
	err := j.replaceFile(data)
	j.mu.Lock()
	defer j.mu.Unlock()
	if err != nil {
		j.err = err
		return err
	}
	j.records = len(leases)
	j.durable = target
	j.inFile = max(j.inFile, target)
	return nil
}

func (j *Journal) replaceFile(data []byte) error {
	tmp := filepath.Join(j.dir, journalTmp)
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o640)
	if err != nil {
		return fmt.Errorf("dhcpsrv: journal snapshot: %w", err)
	}
	if _, err = f.Write(data); err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(j.dir, journalName))
	}
	if err == nil {
		err = files.SyncDir(j.dir)
	}
	if err != nil {
		return fmt.Errorf("dhcpsrv: journal snapshot: %w", err)
	}
	nf, err := os.OpenFile(filepath.Join(j.dir, journalName), os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("dhcpsrv: reopen journal: %w", err)
	}
	if j.f != nil {
		j.f.Close()
	}
	j.f = nf
	return nil
}

// Close fsyncs what a SyncInterval left pending (without one every write
// is already durable), closes the file and releases the directory lock. Further calls fail with ErrClosed.
func (j *Journal) Close() error {
	j.syncMu.Lock()
	defer j.syncMu.Unlock()
	var serr error
	if j.syncInterval > 0 && j.f != nil {
		serr = j.syncLocked()
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return nil
	}
	j.closed = true
	errs := []error{serr}
	if j.f != nil {
		errs = append(errs, j.f.Close())
	}
	if j.lock != nil {
		errs = append(errs, j.lock.Close())
	}
	return errors.Join(errs...)
}

// Len returns the number of address records held.
func (j *Journal) Len() int {
	j.mu.Lock()
	defer j.mu.Unlock()
	return len(j.byIP)
}

var _ LeaseStore = (*Journal)(nil)
