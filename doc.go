// Package metalboot is a set of composable Go packages for booting
// bare-metal machines over the network, one package per boot stage, plus a
// reference server (examples/labserver) that wires them into one binary.
// It replaces the usual dnsmasq + matchbox + hand-written GRUB files stack.
//
// # The boot flow and who serves it
//
//  1. firmware broadcasts DHCPDISCOVER (option 93 arch, 97 UUID, 60 PXEClient)   dhcpsrv
//  2. DHCP offer: address, next-server, boot file chosen by architecture          dhcpsrv
//     (GRUB i386-pc for BIOS, x86_64-efi / arm64-efi for UEFI, a URL for HTTP boot)
//  3. firmware fetches the GRUB network image over TFTP; GRUB fetches grub.cfg    tftpsrv
//  4. first-stage grub.cfg: insmod http; configfile "/grub?mac=…&arch=…"          grubcfg
//  5. GET /grub?mac=…: per-machine GRUB config from the machine's profile          grubcfg + profile
//  6. the installer fetches GET /ignition?mac=…; installs; reboots                 ignition + profile
//  7. the installed machine resolves lab names (mp.lab, deploy.lab)                dnssrv
//
// # Packages
//
//   - [github.com/metalboot/metalboot/profile]: the inventory (matchbox
//     compatible data directory: profiles, groups, ignition templates),
//     selector matching, server-side rendering of boot-loader variables, and
//     the HTTP middleware that resolves a request to a Machine;
//     [github.com/metalboot/metalboot/profile/etcdprofile] keeps the
//     inventory in etcd, watched by every server.
//   - [github.com/metalboot/metalboot/grubcfg]: first-stage and per-machine
//     GRUB configs, safe quoting, the /grub handler, and a listener that
//     copes with GRUB's fixed TCP source port; the Secure Boot chain
//     (shim → signed GRUB, whose per-machine config, kernel and initrd
//     come over TFTP); its subpackage
//     [github.com/metalboot/metalboot/grubcfg/ipxe] renders the same
//     inventory as iPXE scripts (/boot.ipxe, /ipxe).
//   - [github.com/metalboot/metalboot/ignition]: Ignition installer and
//     installed configs (Flatcar, Fedora CoreOS), Butane templates, the
//     /ignition handler, and matchbox's /generic and /metadata.
//   - [github.com/metalboot/metalboot/dhcpsrv]: DHCPv4 with network-boot
//     options, persistent leases, proxyDHCP and relays;
//     [github.com/metalboot/metalboot/dhcpsrv/etcdstore] shares leases and
//     offers between servers serving one pool active-active on etcd.
//   - [github.com/metalboot/metalboot/tftpsrv]: read-only TFTP over io/fs
//     with dynamic files.
//   - [github.com/metalboot/metalboot/dnssrv]: the lab's DNS zone from the
//     inventory and leases, forwarding for the rest.
//
// Imports point one way: profile uses only internal packages; grubcfg and
// ignition use profile; dhcpsrv, tftpsrv and dnssrv import none of the
// others and declare the small interfaces they need (a reservation lookup,
// a record source, a file handler), which a caller fills from the inventory.
//
// # One server contract
//
// dhcpsrv.Server, tftpsrv.Server and dnssrv.Server follow one contract;
// each package's documentation links here and adds only what is its own.
//
//   - Address: where a server listens is a field, never an argument.
//     tftpsrv and dnssrv have Addr ("" is the package's DefaultAddr; port 0
//     picks a free port, which the opened socket tells); dhcpsrv listens
//     on ports 67 (and 4011 for proxyDHCP) of Interface.
//   - Validate() error reports every configuration mistake at once: an
//     errors.Join of one error per mistake, each naming its field
//     ("Subnets[0].Ranges[1]: …") and wrapping the package's ErrConfig. It
//     binds nothing and asks the system nothing. Listen, Serve and
//     ListenAndServe call it first and return its error; no mistake is
//     only a log line.
//   - Listen(ctx) opens the sockets and returns exactly what Serve takes,
//     or an error, synchronously: a caller sees a port in use or a missing
//     interface before it goes on (dhcpsrv: []net.PacketConn, both ports
//     in proxyDHCP mode; tftpsrv: a net.PacketConn; dnssrv: a
//     net.PacketConn and a net.Listener on the same port). On error
//     nothing stays open.
//   - Serve(ctx, …) serves sockets the caller opened and never closes
//     them: it stops reading with a deadline and clears it again, so the
//     caller can close them, or serve them again. What Serve opened itself
//     (TFTP transfer sockets, accepted TCP connections) it closes.
//   - ListenAndServe(ctx) is Listen, then Serve, then closing what Listen
//     opened.
//   - All three return nil once ctx ends (after their goroutines have
//     ended); any other return is an error: configuration, bind, or a
//     socket that failed.
//   - Defaults: each DefaultX constant is exactly what the zero value of
//     field X does, and every field's documentation says what zero and
//     negative mean (a negative value with no meaning is a Validate error).
//   - Logger *slog.Logger: nil discards (slog.DiscardHandler), in all three.
//   - Stats() returns a snapshot struct of counters since the Server was
//     made. The same thing has the same name in every package: Malformed
//     (datagrams that are not a well-formed request, dropped without an
//     answer), SendErrors (answers the socket would not send), and
//     <Seam>Errors for a caller-supplied seam that failed: dhcpsrv
//     StoreErrors and ReservationErrors, tftpsrv HandlerErrors, dnssrv
//     RecordErrors. A failing seam is never taken for "not found": DHCP
//     drops the packet (the client retries), DNS answers SERVFAIL, TFTP
//     sends an error. The other counters use the protocol's own words
//     (Discovers, Acks; Requests, Completed; Queries, Answered).
//   - Seams that may do I/O (dhcpsrv.LeaseStore and ReservationSource,
//     dnssrv.RecordSource, tftpsrv.Handler) take the context of the
//     request being answered, so a networked backend can honour it.
//   - Linux-only mechanisms (SO_BINDTODEVICE for dhcpsrv.Interface) live in
//     _linux.go files; elsewhere Validate reports them as an error wrapping
//     errors.ErrUnsupported, and every package builds for linux, darwin,
//     freebsd and windows.
//
// In code:
//
//	srv := &tftpsrv.Server{Addr: "10.99.0.1:69", FS: root}
//	if err := srv.Validate(); err != nil { … } // every mistake, no socket
//	conn, err := srv.Listen(ctx)                // bind errors, here
//	if err != nil { … }
//	defer conn.Close()                          // the caller's socket
//	go srv.Serve(ctx, conn)                     // nil once ctx ends
//
// # Minimal wiring
//
//	ign := &ignition.Handler{}
//	store, err := profile.OpenFS(os.DirFS("/srv/metalboot/data"), ign.Check, logger)
//	if err != nil { … } // file, line and reason of every problem
//	res := &profile.Resolver{Store: store, BaseURL: "http://10.99.0.1:8080"}
//	ign.Resolver = res
//	mux := http.NewServeMux()
//	mux.Handle("GET /grub", &grubcfg.Handler{Resolver: res})
//	mux.Handle("GET /ignition", ign)
//	ln, _ := net.Listen("tcp", "10.99.0.1:8080")
//	go http.Serve(grubcfg.Listener(ln), mux)
//
//	first, _ := grubcfg.FirstStageTFTP(grubcfg.FirstStage{HTTPAddr: "10.99.0.1:8080"}, nil)
//	root, _ := tftpsrv.DirFS("/srv/metalboot/tftp") // made by grubcfg.MakeNetDir
//	tftp := &tftpsrv.Server{Addr: "10.99.0.1:69", FS: root, Handler: first}
//	go tftp.ListenAndServe(ctx)
//
// examples/labserver is the complete version of this, with DHCP, DNS,
// metrics, a provisioning timeline and install-once state.
package metalboot
