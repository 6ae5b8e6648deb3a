// Package ipxe renders iPXE scripts from the same inventory as grubcfg's
// GRUB configurations and serves them as matchbox does: /boot.ipxe (and
// /boot.ipxe.0), the static script that reports the machine's attributes,
// and /ipxe?mac=…&uuid=…, the machine's own script.
//
// It lives under grubcfg because grubcfg is where metalboot renders
// boot-loader configurations: both packages turn a profile.Machine into
// a script a boot loader runs, with the same selection, status codes and
// server-side values, and the repository's top level is fixed (see
// DESIGN.md). grubcfg renders GRUB's language; this package renders
// iPXE's, which is different enough to need its own encoder.
//
// # Words
//
// iPXE has no quoting. A script line is split into words at white space,
// "#" starting a word comments out the rest of the line, the words "||",
// "&&" and ";" chain commands, a line ending in '\' continues on the next,
// and each word is then expanded: every "${name}" becomes the value of an
// iPXE setting, and the result is scanned again. Word writes any string
// without white space or NUL as one word iPXE takes as written: a word
// that would start a comment or chain a command, or that ends in '\', is
// written with the empty expansion "${}" before or after it. Nothing
// escapes "${…}"; Literal refuses a string iPXE would expand.
//
// Values from the network (the MAC, UUID, hostname, IP address and
// request labels a profile's strings use) reach a script only through
// profile.Machine.RenderBootFor: besides the kernel command line's check
// (no white space, '"', control character or non-ASCII byte, no bare
// "--"), such a value must not hold '$', '{' or '}', so it can never form
// or complete an expansion; a request whose values cannot be written is
// answered 400. Text from the profile itself is trusted: a "${…}" that
// metalboot does not render is left for iPXE to expand (and reported as a
// warning when the inventory loads). Every rendered word goes through
// Word, so no profile or request content can add a command. Tests read
// every script back with a model of iPXE's script reader (line reader,
// splitter, terminators, expansion), fuzz the renderer with hostile
// values, and run Debian's iPXE under QEMU on scripts full of hostile
// words.
//
// # The initrd trap
//
// Under UEFI, iPXE builds like Debian's (2019) hand initrds to Linux only
// as files in a file system the EFI stub opens by name: the kernel finds
// an initrd only through an "initrd=NAME" argument, and a profile without
// one panics ("Unable to mount root fs") where it boots under BIOS iPXE.
// matchbox's Fedora CoreOS profiles therefore carry "--name main" and
// "initrd=main", its Flatcar profiles "initrd=<file name>". Render gives
// every initrd a name (its --name, else its file name) and writes one
// "initrd=NAME" argument per initrd in place of the profile's own, so a
// profile boots under BIOS and UEFI iPXE whether or not it carries them
// (grubcfg leaves them out: GRUB hands initrds over itself).
//
// # Failure
//
// Every command that can fail jumps to a label that prints what failed
// and runs "exit 1": iPXE returns to the firmware with an error, so a
// BIOS goes on with its next boot device and UEFI firmware with its next
// boot option (a UEFI boot manager that sees success stops at its menu
// instead). A machine that is already installed gets a script that does
// the same on purpose (RenderLocal, Handler.LocalBoot).
package ipxe
