package tftpsrv

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The tftp-hpa client resolves even "127.0.0.1" with AI_ADDRCONFIG, which
// fails ("Address family for hostname not supported") on a host whose only
// IPv4 address is the loopback. So TestTFTPHPA runs client and server in a
// network namespace it creates: the server is this test binary re-executed
// with helperEnv set (see TestMain), which serves a directory on
// 127.0.0.1:6969 inside the namespace until its stdin closes, then prints its
// Stats as JSON.
const helperEnv = "TFTPSRV_TEST_HELPER"

func TestMain(m *testing.M) {
	if cfg := os.Getenv(helperEnv); cfg != "" {
		os.Exit(helperServe(cfg))
	}
	os.Exit(m.Run())
}

type helperConfig struct {
	Dir        string
	Addr       string
	SendAhead  int
	SinglePort bool
}

func helperServe(cfgJSON string) int {
	var cfg helperConfig
	if err := json.Unmarshal([]byte(cfgJSON), &cfg); err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 2
	}
	fsys, err := DirFS(cfg.Dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 2
	}
	var windowed atomic.Int64
	srv := &Server{FS: fsys, Handler: dynamicHandler(nil), SendAhead: cfg.SendAhead, SinglePort: cfg.SinglePort,
		OnTransfer: func(tr Transfer) {
			if tr.Window > 1 {
				windowed.Add(1)
			}
		}}
	ua, err := net.ResolveUDPAddr("udp", cfg.Addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 2
	}
	conn, err := net.ListenUDP("udp", ua)
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 2
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { io.Copy(io.Discard, os.Stdin); cancel() }()
	fmt.Println("READY")
	if err := srv.Serve(ctx, conn); err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 1
	}
	json.NewEncoder(os.Stdout).Encode(helperResult{srv.Stats(), int(windowed.Load())})
	return 0
}

// helperResult is what the helper server prints when it stops.
type helperResult struct {
	Stats    Stats
	Windowed int // transfers that had more than one block in flight
}

var netnsSeq atomic.Int64

// newNetns creates a network namespace with loopback up and one more IPv4
// address (on a dummy or veth device inside the namespace, so glibc's
// AI_ADDRCONFIG sees IPv4 configured) and removes it when the test ends.
func newNetns(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a network namespace")
	}
	ip, err := exec.LookPath("ip")
	if err != nil {
		t.Skip("ip (iproute2) not installed")
	}
	name := fmt.Sprintf("tftpsrv-%d-%d", os.Getpid(), netnsSeq.Add(1))
	if out, err := exec.Command(ip, "netns", "add", name).CombinedOutput(); err != nil {
		t.Skipf("cannot create network namespace: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command(ip, "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	run := func(args ...string) error {
		out, err := exec.Command(ip, append([]string{"-n", name}, args...)...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	require.NoError(t, run("link", "set", "lo", "up"))
	// Best effort: a non-loopback IPv4 address inside the namespace only.
	if run("link", "add", "d0", "type", "dummy") == nil {
		_ = run("addr", "add", "192.0.2.1/24", "dev", "d0")
		_ = run("link", "set", "d0", "up")
	} else if run("link", "add", "v0", "type", "veth", "peer", "name", "v1") == nil {
		_ = run("addr", "add", "192.0.2.1/24", "dev", "v0")
		_ = run("link", "set", "v0", "up")
		_ = run("link", "set", "v1", "up")
	}
	return name
}

// startHelper starts the helper server inside ns and returns a function that
// stops it and returns its Stats.
func startHelper(t *testing.T, ns string, cfg helperConfig) func() helperResult {
	t.Helper()
	b, err := json.Marshal(cfg)
	require.NoError(t, err)
	cmd := exec.Command("ip", "netns", "exec", ns, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+string(b))
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	cmd.Stderr = os.Stderr
	require.NoError(t, cmd.Start())
	killed := false
	t.Cleanup(func() {
		if !killed {
			cmd.Process.Kill() // our own child, by PID
			cmd.Wait()
		}
	})
	sc := bufio.NewScanner(stdout)
	ready := make(chan bool, 1)
	go func() { ready <- sc.Scan() && sc.Text() == "READY" }()
	select {
	case ok := <-ready:
		require.True(t, ok, "helper server did not start")
	case <-time.After(30 * time.Second):
		t.Fatal("helper server did not start within 30s")
	}
	return func() helperResult {
		stdin.Close()
		var st helperResult
		done := make(chan error, 1)
		go func() {
			if !sc.Scan() {
				done <- fmt.Errorf("no stats from helper: %v", sc.Err())
				return
			}
			done <- json.Unmarshal(sc.Bytes(), &st)
		}()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(30 * time.Second):
			t.Fatal("helper server did not stop within 30s of its stdin closing")
		}
		require.NoError(t, cmd.Wait())
		killed = true
		return st
	}
}

func TestTFTPHPA(t *testing.T) {
	bin := needBinary(t, "tftp")
	ns := newNetns(t)
	root, files := testTree(t)
	files["grub.cfg"] = firstStage()
	files["grub/grub.cfg"] = firstStage()
	names := []string{"empty", "one-block", "block-minus-one", "block-plus-one", "three-blocks",
		"blocks-1024x5", "blocks-1468x4", "grub/x86_64-efi/core.efi", "grub/core-link.efi",
		"big.bin", "grub.cfg", "/grub/grub.cfg"}
	for _, mode := range []struct {
		name string
		cfg  helperConfig
	}{
		{"default", helperConfig{}},
		{"lockstep", helperConfig{SendAhead: 1}},
		{"sendahead64", helperConfig{SendAhead: 64}},
		{"single-port", helperConfig{SinglePort: true}},
	} {
		t.Run(mode.name, func(t *testing.T) {
			cfg := mode.cfg
			cfg.Dir, cfg.Addr = root, "127.0.0.1:6969"
			stop := startHelper(t, ns, cfg)
			out := t.TempDir()
			tftp := func(args ...string) (string, error) {
				return runClient(t, out, "ip", append([]string{"netns", "exec", ns, bin, "-m", "binary", "127.0.0.1", "6969", "-c"}, args...)...)
			}
			for i, name := range names {
				local := filepath.Join(out, fmt.Sprintf("f%d", i))
				text, err := tftp("get", name, local)
				require.NoError(t, err, "%s: %s", name, text)
				require.Empty(t, strings.TrimSpace(text), "%s", name)
				got, err := os.ReadFile(local)
				require.NoError(t, err)
				want := files[strings.TrimPrefix(name, "/")]
				require.Equal(t, sum(want), sum(got), "%s: sha256 (%d vs %d bytes)", name, len(want), len(got))
			}
			// Escapes and writes through the same client.
			for _, bad := range []string{"../secret", "grub/../../secret", "esc-relative", "esc-absolute", "esc-dir/passwd"} {
				text, _ := tftp("get", bad, filepath.Join(out, "bad"))
				require.Contains(t, text, "Error code 2: access violation", "%s", bad)
			}
			require.NoError(t, os.WriteFile(filepath.Join(out, "up"), []byte("x"), 0o644))
			text, _ := tftp("put", "up", "uploaded")
			require.Contains(t, text, "read-only server")

			res := stop()
			st := res.Stats
			require.Equal(t, uint64(len(names)), st.Completed)
			require.Equal(t, uint64(6), st.Refused)
			require.Zero(t, st.Failed)
			var bytes uint64
			windowed := 0
			for _, n := range names {
				size := len(files[strings.TrimPrefix(n, "/")])
				bytes += uint64(size)
				if size >= 2*512 { // blocks left after block 1 go out windowed
					windowed++
				}
			}
			require.Equal(t, bytes, st.BytesSent)
			if cfg.SendAhead == 1 {
				windowed = 0
			}
			require.Equal(t, windowed, res.Windowed, "transfers with blocks sent ahead")
		})
	}
}
