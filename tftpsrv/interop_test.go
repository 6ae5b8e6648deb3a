package tftpsrv

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// client is one real TFTP client invocation style.
type client struct {
	name    string
	bin     string
	blksize int // 0: the client sends no blksize option
	window  int // 0: the client sends no windowsize option
	// args returns the command line fetching remote into local.
	args func(host, port, remote, local string, blksize int) []string
	// oack extracts (tsize, blksize) the server acknowledged from the
	// client's output, when the client prints them.
	oack func(out string) (tsize, blksize int, ok bool)
}

var atftpOACK = regexp.MustCompile(`received OACK <([^>]*)>`)

func parseAtftpOACK(out string) (tsize, blksize int, ok bool) {
	m := atftpOACK.FindStringSubmatch(out)
	if m == nil {
		return -1, -1, false
	}
	tsize, blksize = -1, -1
	for _, kv := range strings.Split(m[1], ",") {
		k, v, found := strings.Cut(strings.TrimSpace(kv), ":")
		if !found {
			continue
		}
		n, _ := strconv.Atoi(strings.TrimSpace(v))
		switch strings.TrimSpace(k) {
		case "tsize":
			tsize = n
		case "blksize":
			blksize = n
		}
	}
	return tsize, blksize, true
}

func clients() []client {
	// tftp-hpa's client is run by TestTFTPHPA inside a network namespace:
	// it resolves even numeric hosts with AI_ADDRCONFIG and fails on a
	// host whose only IPv4 address is 127.0.0.1.
	var cs []client
	cs = append(cs, client{name: "atftp", bin: "atftp",
		args: func(host, port, remote, local string, _ int) []string {
			return []string{"-g", "-r", remote, "-l", local, host, port}
		}})
	for _, bs := range []int{512, 1024, 1468} {
		cs = append(cs, client{name: fmt.Sprintf("atftp-blksize%d", bs), bin: "atftp", blksize: bs,
			args: func(host, port, remote, local string, bs int) []string {
				return []string{"--trace", "--option", fmt.Sprintf("blksize %d", bs), "--option", "tsize 0",
					"-g", "-r", remote, "-l", local, host, port}
			},
			oack: parseAtftpOACK})
	}
	// RFC 7440 windowsize, as EDK2 firmware can ask.
	cs = append(cs, client{name: "atftp-windowsize16", bin: "atftp", blksize: 1468, window: 16,
		args: func(host, port, remote, local string, bs int) []string {
			return []string{"--trace", "--option", fmt.Sprintf("blksize %d", bs), "--option", "windowsize 16",
				"--option", "tsize 0", "-g", "-r", remote, "-l", local, host, port}
		},
		oack: parseAtftpOACK})
	cs = append(cs, client{name: "curl-no-options", bin: "curl",
		args: func(host, port, remote, local string, _ int) []string {
			return []string{"-sS", "--tftp-no-options", "-o", local, fmt.Sprintf("tftp://%s:%s/%s", host, port, remote)}
		}})
	for _, bs := range []int{512, 1024, 1468} {
		cs = append(cs, client{name: fmt.Sprintf("curl-blksize%d", bs), bin: "curl", blksize: bs,
			args: func(host, port, remote, local string, bs int) []string {
				return []string{"-sS", "--tftp-blksize", strconv.Itoa(bs), "-o", local,
					fmt.Sprintf("tftp://%s:%s/%s", host, port, remote)}
			}})
	}
	return cs
}

// dynamicHandler answers the names labserver answers from grubcfg, with
// content that depends on the client, and lets everything else fall back.
func dynamicHandler(calls *int64) Handler {
	return HandlerFunc(func(ctx context.Context, req *Request) ([]byte, error) {
		switch {
		case req.Filename == "grub.cfg", req.Filename == "grub/grub.cfg":
			// Over one block, not a multiple of 512, so tsize matters.
			return []byte(fmt.Sprintf("# first stage for %s\n%s", req.Client.Addr(), strings.Repeat("insmod http\n", 60))), nil
		case strings.HasPrefix(req.Filename, "grub/grub.cfg-01-"):
			return nil, fmt.Errorf("no machine: %w", fs.ErrNotExist)
		case req.Filename == "handler-error":
			return nil, errSentinelTest
		case req.Filename == "handler-panic":
			panic("boom")
		}
		return nil, ErrNotHandled
	})
}

func firstStage() []byte {
	return []byte(fmt.Sprintf("# first stage for %s\n%s", "127.0.0.1", strings.Repeat("insmod http\n", 60)))
}

func TestInteropRealClients(t *testing.T) {
	root, files := testTree(t)
	files["grub.cfg"] = firstStage()
	files["grub/grub.cfg"] = firstStage()
	allNames := make([]string, 0, len(files))
	for n := range files {
		allNames = append(allNames, n)
	}
	sort.Strings(allNames)
	small := []string{"empty", "one-block", "three-blocks", "blocks-1468x4", "grub.cfg", "grub/x86_64-efi/core.efi", "big.bin"}

	dirFS, err := DirFS(root)
	require.NoError(t, err)
	modes := []struct {
		name  string
		srv   func() *Server
		names []string
	}{
		{"default-DirFS", func() *Server { return &Server{FS: dirFS} }, allNames},
		{"default-osDirFS", func() *Server { return &Server{FS: os.DirFS(root)} }, small},
		{"lockstep", func() *Server { return &Server{FS: dirFS, SendAhead: 1} }, small},
		{"sendahead64", func() *Server { return &Server{FS: dirFS, SendAhead: 64} }, small},
		{"single-port", func() *Server { return &Server{FS: dirFS, SinglePort: true} }, small},
	}
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			var log transferLog
			srv := mode.srv()
			srv.Handler = dynamicHandler(nil)
			srv.OnTransfer = log.add
			host, port := hostPort(startServer(t, srv))
			runs := 0
			for _, c := range clients() {
				t.Run(c.name, func(t *testing.T) {
					bin := needBinary(t, c.bin)
					out := t.TempDir()
					for _, name := range mode.names {
						local := filepath.Join(out, strings.ReplaceAll(name, "/", "_"))
						remote := name
						if c.bin == "curl" {
							remote = strings.ReplaceAll(name, " ", "%20")
						}
						text, err := runClient(t, out, bin, c.args(host, port, remote, local, c.blksize)...)
						require.NoError(t, err, "%s %s: %s", c.name, name, text)
						require.NotContains(t, text, "rror", "%s %s", c.name, name)
						got, err := os.ReadFile(local)
						if len(files[name]) == 0 && os.IsNotExist(err) {
							got, err = nil, nil // curl writes no file for 0 bytes
						}
						require.NoError(t, err, "%s %s", c.name, name)
						require.Equal(t, len(files[name]), len(got), "%s %s: size", c.name, name)
						require.Equal(t, sum(files[name]), sum(got), "%s %s: sha256", c.name, name)
						if c.oack != nil {
							tsize, blksize, ok := c.oack(text)
							require.True(t, ok, "%s %s: no OACK in %q", c.name, name, text)
							require.Equal(t, c.blksize, blksize, "%s %s: blksize", c.name, name)
							if len(files[name]) > 0 {
								require.Equal(t, len(files[name]), tsize, "%s %s: tsize", c.name, name)
							} else {
								// A zero tsize is left out of the OACK (curl refuses it).
								require.Equal(t, -1, tsize, "%s %s: tsize", c.name, name)
							}
						}
						runs++
					}
				})
			}
			st := srv.Stats()
			assert.Equal(t, uint64(runs), st.Completed, "completed transfers")
			assert.Zero(t, st.Failed)
			assert.Zero(t, st.Refused)
			dyn, windowSize := 0, 0
			for _, tr := range log.all() {
				require.NoError(t, tr.Err, "%+v", tr)
				require.Equal(t, tr.Size, tr.Bytes, "%+v", tr)
				require.Equal(t, int64(len(files[tr.Filename])), tr.Bytes, "%+v", tr)
				require.True(t, tr.Client.Addr().IsLoopback(), "%+v", tr)
				// Blocks are sent ahead once the client has
				// acknowledged the OACK or block 1 (never in the
				// lockstep mode), so whatever is left after block 1
				// goes out windowed.
				switch {
				case tr.WindowSize:
					windowSize++
					require.LessOrEqual(t, tr.Window, 16, "%+v", tr)
					if tr.Bytes >= 16*int64(tr.BlockSize) {
						require.Equal(t, 16, tr.Window, "the negotiated window: %+v", tr)
					}
				case mode.name == "lockstep":
					require.LessOrEqual(t, tr.Window, 1, "%+v", tr)
				case tr.Bytes >= 2*int64(tr.BlockSize):
					require.Greater(t, tr.Window, 1, "sent ahead: %+v", tr)
				}
				if tr.Dynamic {
					dyn++
					require.Contains(t, []string{"grub.cfg", "grub/grub.cfg"}, tr.Filename)
				}
			}
			assert.Positive(t, dyn, "dynamic transfers")
			if _, err := exec.LookPath("atftp"); err == nil {
				assert.Equal(t, len(mode.names), windowSize, "transfers with windowsize negotiated")
			}
		})
	}
}

// TestEscapesRealClient asks atftp for names that must be refused and
// checks the error reaches the client, nothing is written, and each refusal
// is counted and reported.
func TestEscapesRealClient(t *testing.T) {
	bin := needBinary(t, "atftp")
	root, _ := testTree(t)
	for _, fsKind := range []string{"DirFS", "os.DirFS"} {
		t.Run(fsKind, func(t *testing.T) {
			var fsys fs.FS = os.DirFS(root)
			if fsKind == "DirFS" {
				var err error
				fsys, err = DirFS(root)
				require.NoError(t, err)
			}
			var log transferLog
			srv := &Server{FS: fsys, OnTransfer: log.add}
			host, port := hostPort(startServer(t, srv))
			cases := []struct{ name, msg string }{
				{"../secret", "file name refused"},
				{"/../secret", "file name refused"},
				{"grub/../../secret", "file name refused"},
				{"./grub.cfg", "file name refused"},
				{"//secret", "file name refused"},
				{"grub\\x86_64-efi\\core.efi", "file name refused"},
				{"esc-relative", "access violation"},
				{"esc-absolute", "access violation"},
				{"esc-dir/passwd", "access violation"},
				{"grub/esc-nested", "access violation"},
				{"loop-a", "access violation"},
				{"grub", "not a regular file"},
				{"no-such-file", "file not found"},
			}
			out := t.TempDir()
			for i, c := range cases {
				local := filepath.Join(out, fmt.Sprintf("f%d", i))
				text, err := runClient(t, out, bin, "-g", "-r", c.name, "-l", local, host, port)
				require.Error(t, err, "%q: %s", c.name, text)
				require.Contains(t, text, "error received from server", "%q: %s", c.name, text)
				require.Contains(t, text, c.msg, "%q", c.name)
				require.NotContains(t, text, "outside", "%q", c.name)
				if b, err := os.ReadFile(local); err == nil {
					require.Empty(t, b, "%q", c.name)
				}
			}
			st := srv.Stats()
			require.Equal(t, uint64(len(cases)), st.Requests)
			require.Equal(t, uint64(len(cases)-1), st.Refused)
			require.Equal(t, uint64(1), st.NotFound)
			require.Zero(t, st.Completed)
			require.Zero(t, st.BytesSent)
			for _, tr := range log.all() {
				require.Error(t, tr.Err)
				require.Zero(t, tr.Bytes)
			}
		})
	}
}

func TestWriteRefusedRealClient(t *testing.T) {
	bin := needBinary(t, "atftp")
	root, _ := testTree(t)
	srv := &Server{FS: os.DirFS(root)}
	host, port := hostPort(startServer(t, srv))
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "up"), []byte("payload"), 0o644))
	text, err := runClient(t, dir, bin, "-p", "-l", "up", "-r", "uploaded", host, port)
	require.Error(t, err, text)
	require.Contains(t, text, "access violation: read-only server")
	_, err = os.Stat(filepath.Join(root, "uploaded"))
	require.ErrorIs(t, err, fs.ErrNotExist)
	require.Equal(t, uint64(1), srv.Stats().Refused)
}
