package tftpsrv_test

import (
	"bytes"
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing/fstest"

	"github.com/pin/tftp/v3"

	"github.com/metalboot/metalboot/tftpsrv"
)

// A server that answers grub.cfg with generated content and everything else
// from a file tree; here fetched with pin/tftp's client. Listen binds (a
// bind error shows here, before anything runs), Serve serves until the
// context ends and leaves closing the socket to its opener;
// ListenAndServe(ctx) does both and closes it.
func Example() {
	var (
		mu  sync.Mutex
		log []string
	)
	srv := &tftpsrv.Server{
		Addr: "127.0.0.1:0", // "" is tftpsrv.DefaultAddr, ":69"
		// In a real server: fsys, err := tftpsrv.DirFS("/srv/tftp")
		FS: fstest.MapFS{
			"grub/x86_64-efi/core.efi": {Data: []byte("static core image")},
		},
		Handler: tftpsrv.HandlerFunc(func(ctx context.Context, req *tftpsrv.Request) ([]byte, error) {
			if req.Filename != "grub.cfg" {
				return nil, tftpsrv.ErrNotHandled // fall back to FS
			}
			return []byte("configfile (http,10.0.0.1:8080)/grub\n"), nil
		}),
		OnTransfer: func(t tftpsrv.Transfer) {
			mu.Lock()
			defer mu.Unlock()
			log = append(log, fmt.Sprintf("%s: %d bytes, dynamic=%v, err=%v", t.Filename, t.Bytes, t.Dynamic, t.Err))
		},
	}
	ctx, cancel := context.WithCancel(context.Background())
	conn, err := srv.Listen(ctx) // validates the configuration, then binds
	if err != nil {
		fmt.Println(err)
		cancel()
		return
	}
	defer conn.Close()
	done := make(chan error)
	go func() { done <- srv.Serve(ctx, conn) }()

	c, err := tftp.NewClient(conn.LocalAddr().String())
	if err != nil {
		fmt.Println(err)
		cancel()
		return
	}
	for _, name := range []string{"/grub.cfg", "grub/x86_64-efi/core.efi", "../etc/passwd"} {
		wt, err := c.Receive(name, "octet")
		if err != nil {
			fmt.Printf("get %s: %s\n", name, strings.TrimRight(err.Error(), "\x00"))
			continue
		}
		var b bytes.Buffer
		if _, err := wt.WriteTo(&b); err != nil {
			fmt.Printf("get %s: %v\n", name, err)
			continue
		}
		fmt.Printf("got %s: %q\n", name, b.String())
	}
	cancel()
	fmt.Println("Serve returned:", <-done)
	st := srv.Stats()
	fmt.Printf("completed=%d refused=%d\n", st.Completed, st.Refused)
	sort.Strings(log)
	for _, l := range log {
		fmt.Println(l)
	}
	// Output:
	// got /grub.cfg: "configfile (http,10.0.0.1:8080)/grub\n"
	// got grub/x86_64-efi/core.efi: "static core image"
	// get ../etc/passwd: code: 2, message: access violation: file name refused
	// Serve returned: <nil>
	// completed=2 refused=1
	// ../etc/passwd: 0 bytes, dynamic=false, err=tftpsrv: invalid file name: "../etc/passwd" is not a valid path inside the tree
	// grub.cfg: 37 bytes, dynamic=true, err=<nil>
	// grub/x86_64-efi/core.efi: 17 bytes, dynamic=false, err=<nil>
}
