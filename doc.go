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
//  4. first-stage grub.cfg: insmod http; configfile "/grub?mac=${net_default_mac}" grubcfg
//  5. GET /grub?mac=…: per-machine GRUB config from the machine's profile          grubcfg + profile
//  6. the installer fetches GET /ignition?mac=…; installs; reboots                 ignition + profile
//  7. the installed machine resolves lab names (mp.lab, deploy.lab)                dnssrv
//
// # Packages
//
//   - [github.com/metalboot/metalboot/profile]: the inventory (matchbox
//     compatible data directory: profiles, groups, ignition templates),
//     selector matching, server-side rendering of boot-loader variables, and
//     the HTTP middleware that resolves a request to a Machine.
//   - [github.com/metalboot/metalboot/grubcfg]: first-stage and per-machine
//     GRUB configs, safe quoting, the /grub handler, and a listener that
//     copes with GRUB's fixed TCP source port.
//   - [github.com/metalboot/metalboot/ignition]: Ignition installer and
//     installed configs (Flatcar, Fedora CoreOS), Butane templates, the
//     /ignition handler.
//   - [github.com/metalboot/metalboot/dhcpsrv]: DHCPv4 with network-boot
//     options, persistent leases, proxyDHCP and relays.
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
//	first := grubcfg.FirstStage{HTTPAddr: "10.99.0.1:8080"}
//	root, _ := tftpsrv.DirFS("/srv/metalboot/tftp") // made by grub-mknetdir
//	tftp := &tftpsrv.Server{FS: root, Handler: tftpsrv.HandlerFunc(
//		func(ctx context.Context, r *tftpsrv.Request) ([]byte, error) {
//			if mac, ok := grubcfg.FirstStageName(r.Filename); ok {
//				f := first
//				f.MAC = mac // zero for plain grub.cfg
//				return f.Render()
//			}
//			return nil, tftpsrv.ErrNotHandled
//		})}
//	go tftp.ListenAndServe(ctx, "10.99.0.1:69")
//
// examples/labserver is the complete version of this, with DHCP, DNS,
// metrics, a provisioning timeline and install-once state.
package metalboot
