// Package grubcfg renders the GRUB configurations of a network boot and
// serves them over HTTP.
//
// A machine told to boot from the network gets GRUB's network image over
// TFTP, or over HTTP with UEFI HTTP boot. [MakeNetDir] makes the TFTP root
// with grub-mknetdir, one image per installed platform, exactly where
// dhcpsrv's default boot policy points the firmware (dhcpsrv.DefaultBootFiles
// is the one definition of that layout; [BootFilePath]), plus the UEFI
// HTTP-boot image ([MakeHTTPBootImage]: GRUB 2.06 configures no network
// after an HTTP boot, so the image runs DHCP itself and reads the rest from
// the server). GRUB then reads a first-stage grub.cfg (rendered by
// FirstStage, served over TFTP by [FirstStageTFTP] or, for UEFI HTTP boot,
// over HTTP by FirstStageHandler) that loads GRUB's network modules, points
// $root at the HTTP server and runs
//
//	configfile "/grub?mac=${net_default_mac}&arch=${grub_cpu}"
//
// ($grub_cpu is i386 on BIOS, x86_64 or arm64 on UEFI: the server matches
// it as the "arch" selector, so one group can send each architecture its
// own kernel.)
//
// A custom server needs three pieces from this package:
//
//	nd, _ := grubcfg.MakeNetDir(ctx, "/srv/tftp", grubcfg.NetDirOptions{HTTPHost: "10.99.0.1:8080"}) // once
//	first, _ := grubcfg.FirstStageTFTP(grubcfg.FirstStage{HTTPAddr: "10.99.0.1:8080"}, nil)
//	tftp := &tftpsrv.Server{FS: fsys, Handler: first} // fsys: tftpsrv.DirFS(nd.Dir)
//	http.Handle("GET /grub", &grubcfg.Handler{Resolver: resolver})
//
// The /grub Handler resolves the request to a machine with the profile
// package and answers that machine's configuration (Render): an EFI and a
// BIOS menu entry, chosen when GRUB runs by $grub_platform, that load the
// profile's kernel and initrds with the kernel arguments already rendered on
// the server, so no boot-loader variable is left for GRUB to expand. A
// machine that is already installed can get a configuration that boots its
// local disk instead (RenderLocal, Handler.LocalBoot).
//
// Machines that boot through iPXE instead (matchbox's /boot.ipxe and
// /ipxe, from the same inventory) get their scripts from the subpackage
// grubcfg/ipxe, which renders iPXE's language with the same selection,
// status codes and server-side values.
//
// # Secure Boot
//
// Firmware with Secure Boot on refuses grub-mknetdir's unsigned images.
// [InstallSecureBoot] copies the distribution's signed chain into the
// TFTP root (Debian's shim as shimx64.efi, where dhcpsrv's LoaderShim
// points clients; the signed network GRUB as grubx64.efi, where shim
// looks; MokManager as mmx64.efi). That GRUB reads the same grub/grub.cfg
// but has no http module and, locked down, loads none, so a first stage
// with [FirstStage].TFTP tries http only when GRUB is not locked down and
// otherwise loads "(tftp)/grub?mac=<MAC>", which [TFTPConfigHandler]
// answers through the /grub Handler (same selection, quoting and
// errors) with kernel and initrds over TFTP ([Options].TFTP,
// [TFTPFiles]: "/assets/x" becomes "(tftp)/assets/x"; a location only
// HTTP reaches is [ErrNeedsHTTP], reported at load by [CheckTFTP]).
// labserver's e2e boots OVMF's Secure Boot build through it to a signed
// Debian kernel, and shows an unsigned core.efi and an unsigned kernel
// refused.
//
// # Quoting
//
// Every value that enters a rendered script — paths, URLs, kernel
// arguments, titles, messages — goes through Quote, which makes it one
// literal GRUB word; no profile or request content can add a GRUB command.
// Tests check every rendered configuration with grub-script-check from
// GRUB 2.06, fuzz Quote against it and a model of GRUB's lexer, and run
// GRUB 2.06 itself under QEMU: quoted values echo back exactly, every
// rendered configuration sources cleanly, OVMF network-boots through the
// first stage to "GET /grub?mac=…" and the EFI entry, and both local-boot
// entries hand over to the disk (BIOS) or the firmware (EFI).
//
// GRUB quoting keeps a value one GRUB word, but GRUB passes the words to
// the kernel joined by spaces (2.06 wraps a word with a space in double
// quotes and escapes quotes with a backslash Linux does not know), and
// Linux splits its command line at spaces outside double quotes. So a
// value from the network (hostname, MAC, UUID, request labels) is also
// encoded for the kernel command line before it is quoted for GRUB
// (profile.Machine.Render): one that could add or end a kernel parameter
// (white space, '"', control characters, non-ASCII, a bare "--") is
// refused, and the Handler answers 400 with the reason. Tests read every
// configuration back with the lexer model, build the command line both
// ways GRUB does and split it as Linux does.
//
// # Install once
//
// RenderLocal (and Handler.LocalBoot) answers an installed machine with a
// configuration that boots its disk: "exit" on EFI, so the firmware goes on
// with its next boot option; on BIOS "chainloader +1" on the first disk
// (Options.LocalDisk), because a PXE-loaded GRUB's exit often reboots into
// the network boot again (Options.BIOSExit chooses exit anyway).
//
// # Commands
//
// Stock GRUB 2.06 (Debian's grub-efi-amd64-bin, grub-pc-bin and upstream)
// boots Linux with "linux" and "initrd" on both platforms: on EFI, "linux"
// starts the kernel through its EFI stub (EFI handover protocol). The
// "linuxefi" and "initrdefi" commands exist only in distribution-patched
// builds (older Fedora/RHEL/SUSE GRUBs) and fail with "can't find command"
// on stock GRUB, which is why matchbox's template does not boot under
// Debian's GRUB. The EFI entry therefore uses "linux"/"initrd" by default;
// Options.EFILoader selects "linuxefi"/"initrdefi" for a lab whose GRUB
// needs them.
//
// # What GRUB 2.06 really does (measured)
//
//   - "$net_default_mac" is set on both platforms; "$net_efinet0_dhcp_mac"
//     was empty under OVMF, so the first stage uses $net_default_mac.
//   - `configfile "/grub?mac=${net_default_mac}"` with root=(http,HOST:PORT)
//     reaches the server as "GET /grub?mac=52:54:00:…"; the quoted "?" is
//     sent as is, and so is a quoted "&" (…&arch=${grub_cpu} arrives as
//     "&arch=x86_64" from OVMF, "&arch=arm64" from AAVMF).
//   - configfile returns silently when the HTTP fetch fails, so an echo
//     after it tells the operator what happened.
//   - BIOS GRUB prints on a serial console only after
//     "serial --unit=0 --speed=115200; terminal_input serial console;
//     terminal_output serial console"; UEFI GRUB prints there by itself.
//   - GRUB's HTTP client has no TLS: https:// kernel or initrd URLs are
//     rejected when rendering (ErrUnsupportedURL).
package grubcfg
