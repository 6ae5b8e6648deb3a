package dhcpsrv

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/metalboot/metalboot/internal/files"
)

// JournalError is returned (as *JournalError) by OpenJournal for a
// journal it will not replay. It wraps [ErrCorrupt] and Err, so both
// errors.Is(err, ErrCorrupt) and errors.As(err, &je) work. The file has
// not been changed; see [MoveAside] for the way out.
type JournalError struct {
	// File is the journal file's path.
	File string
	// Offset is the byte offset of the damaged record in File.
	Offset int64
	// Record is the start of the damaged record as read (raw bytes, at
	// most 120 of them, "…" appended when cut; Error quotes it).
	Record string
	// Err says what is wrong with the record.
	Err error
}

// Error returns e.g. `dhcpsrv: corrupt lease journal /var/lib/x/leases.journal
// at offset 292: checksum mismatch: record "1a2b3c4d {\"op\":…"`.
func (e *JournalError) Error() string {
	return fmt.Sprintf("%v %s at offset %d: %v: record %q (the file is left as it is; move it aside to start without leases)",
		ErrCorrupt, e.File, e.Offset, e.Err, e.Record)
}

// Unwrap returns ErrCorrupt and Err.
func (e *JournalError) Unwrap() []error {
	if e.Err == nil {
		return []error{ErrCorrupt}
	}
	return []error{ErrCorrupt, e.Err}
}

// maxRecordQuote is how much of a damaged or torn record errors and
// reports keep.
const maxRecordQuote = 120

// clip returns the start of a journal line for an error or a report.
func clip(line []byte) string {
	if len(line) > 0 && line[len(line)-1] == '\n' {
		line = line[:len(line)-1]
	}
	if len(line) > maxRecordQuote {
		return string(line[:maxRecordQuote]) + "…"
	}
	return string(line)
}

// maxDropped bounds JournalRecovery.Dropped.
const maxDropped = 100

// JournalRecovery says what OpenJournal dropped while replaying a
// journal. The zero value (apart from File) means nothing was dropped.
type JournalRecovery struct {
	// File is the journal file replayed.
	File string
	// TornOffset, TornBytes and TornRecord describe the torn last record
	// that was dropped: its byte offset, its length and its start (as in
	// JournalError.Record). TornBytes is 0 when there was none.
	TornOffset int64
	TornBytes  int
	TornRecord string
	// BadHostnames and BadUUIDs count lease fields removed because they
	// failed [ValidHostname] or [ValidUUID]; the leases were kept.
	BadHostnames, BadUUIDs int
	// Dropped lists the first 100 removed fields, for logs.
	Dropped []DroppedField
}

// DroppedField is one lease field removed during replay.
type DroppedField struct {
	Offset int64      // byte offset of the record in the journal
	IP     netip.Addr // the lease's address
	Field  string     // "hostname" or "uuid"
	Value  string     // the value removed, as stored
}

// Recovery returns what OpenJournal dropped while replaying the file. A
// [Server] whose Leases is a *Journal logs it (warnings) and adds the
// counts to its Stats when it starts, so a caller that hands the journal
// to a Server need not look at it.
func (j *Journal) Recovery() JournalRecovery {
	j.mu.Lock()
	defer j.mu.Unlock()
	r := j.recovery
	r.Dropped = append([]DroppedField(nil), r.Dropped...)
	return r
}

// MoveAside is the operator's explicit way past a corrupt journal. It
// renames the journal file at path (a [JournalError]'s File, or
// [JournalPath] of the directory) to path + ".corrupt-" + the current UTC
// time (e.g. leases.journal.corrupt-20261125T120000.123456789Z) and
// returns the new name. The next OpenJournal on the directory then starts
// with no leases, while the damaged file stays beside it for inspection.
// OpenJournal never does this by itself.
//
// Starting without leases forgets every address the file held: clients
// still using one keep it until they renew (they get a NAK or, if the
// address was given to another machine meanwhile, an address conflict).
// Prefer repairing the file when the damage is small (each line is
// "<crc32 hex> <json>"; the error names the offset of the bad one).
//
// MoveAside takes the journal directory's lock first, so it fails while a
// server has the journal open. It never overwrites an existing file (a
// taken name gets ".1", ".2"… added). It fails with an error wrapping
// fs.ErrNotExist when path does not exist.
func MoveAside(path string) (string, error) {
	if _, err := os.Lstat(path); err != nil {
		return "", fmt.Errorf("dhcpsrv: move journal aside: %w", err)
	}
	lock, err := lockDir(filepath.Dir(path))
	if err != nil {
		return "", err
	}
	defer lock.Close()
	dst, err := files.MoveAside(path)
	if err != nil {
		return "", fmt.Errorf("dhcpsrv: move journal aside: %w", err)
	}
	return dst, nil
}
