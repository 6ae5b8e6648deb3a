package grubcfg_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http/httptest"
	"net/netip"
	"os"
	"strings"

	"github.com/metalboot/metalboot/dhcpsrv"
	"github.com/metalboot/metalboot/dhcpsrv/hwaddr"
	"github.com/metalboot/metalboot/grubcfg"
	"github.com/metalboot/metalboot/profile"
	"github.com/metalboot/metalboot/profile/demo"
	"github.com/metalboot/metalboot/tftpsrv"
)

// Serve /grub for the demo lab and ask for mp.lab's configuration, as GRUB
// does after its first stage.
func ExampleHandler() {
	store, err := profile.OpenFS(demo.FS(), nil, nil)
	if err != nil {
		panic(err)
	}
	h := &grubcfg.Handler{
		Resolver: &profile.Resolver{Store: store, BaseURL: "http://172.22.10.2:8080"},
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/grub?mac=00:23:32:2f:40:3c", nil))
	fmt.Println(rec.Code, rec.Header().Get("Content-Type"))
	_, _ = io.Copy(os.Stdout, rec.Body)

	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/grub?mac=;reboot", nil))
	fmt.Print(rec.Code, " ", rec.Body.String())
	// Output:
	// 200 text/plain; charset=utf-8
	// # metalboot: generated for one machine, do not edit
	// set timeout=0
	// if [ "$grub_platform" = "efi" ]; then
	//   set default=efi
	// else
	//   set default=bios
	// fi
	// echo 'metalboot: machine 00:23:32:2f:40:3c (mp.lab), group mp, profile install'
	//
	// menuentry 'Flatcar installer: boots the PXE image, which installs to the disk named in metadata (EFI)' --id efi {
	//   echo 'metalboot: loading kernel /assets/flatcar/current/flatcar_production_pxe.vmlinuz'
	//   linux '/assets/flatcar/current/flatcar_production_pxe.vmlinuz' 'flatcar.first_boot=yes' 'ignition.config.url=http://172.22.10.2:8080/ignition?mac=00:23:32:2f:40:3c' 'console=tty0' 'console=ttyS0,115200n8'
	//   echo 'metalboot: loading initrd /assets/flatcar/current/flatcar_production_pxe_image.cpio.gz'
	//   initrd '/assets/flatcar/current/flatcar_production_pxe_image.cpio.gz'
	// }
	//
	// menuentry 'Flatcar installer: boots the PXE image, which installs to the disk named in metadata (BIOS)' --id bios {
	//   echo 'metalboot: loading kernel /assets/flatcar/current/flatcar_production_pxe.vmlinuz'
	//   linux '/assets/flatcar/current/flatcar_production_pxe.vmlinuz' 'flatcar.first_boot=yes' 'ignition.config.url=http://172.22.10.2:8080/ignition?mac=00:23:32:2f:40:3c' 'console=tty0' 'console=ttyS0,115200n8'
	//   echo 'metalboot: loading initrd /assets/flatcar/current/flatcar_production_pxe_image.cpio.gz'
	//   initrd '/assets/flatcar/current/flatcar_production_pxe_image.cpio.gz'
	// }
	// 400 bad request: query: invalid semicolon separator in query
}

// The first-stage grub.cfg that GRUB reads over TFTP next to its network
// image.
func ExampleFirstStage() {
	cfg, err := grubcfg.FirstStage{HTTPAddr: "10.99.0.1:8080", Serial: &grubcfg.Serial{}}.Render()
	if err != nil {
		panic(err)
	}
	fmt.Print(string(cfg))
	// Output:
	// # metalboot first stage: generated, do not edit
	// insmod net
	// insmod http
	// if [ "$grub_platform" = "efi" ]; then
	//   insmod efinet
	// else
	//   serial --unit=0 --speed=115200
	//   terminal_input serial console
	//   terminal_output serial console
	// fi
	// set root='(http,10.99.0.1:8080)'
	// echo 'metalboot: loading http://10.99.0.1:8080/grub?mac='"${net_default_mac}&arch=${grub_cpu}"
	// configfile "/grub?mac=${net_default_mac}&arch=${grub_cpu}"
	// echo 'metalboot: could not load http://10.99.0.1:8080/grub?mac='"${net_default_mac}&arch=${grub_cpu}" '(is the server up? does this MAC match a group? the server log says why)'
}

// A TFTP server answers the names GRUB asks for with FirstStageName.
func ExampleFirstStageName() {
	for _, name := range []string{"grub/grub.cfg-01-52-54-00-12-34-56", "grub/grub.cfg-0A630064", "grub/grub.cfg", "grub/x86_64-efi/core.efi"} {
		mac, ok := grubcfg.FirstStageName(name)
		switch {
		case ok && !mac.IsZero():
			cfg, _ := grubcfg.FirstStage{HTTPAddr: "10.99.0.1:8080", MAC: mac}.Render()
			for _, line := range strings.Split(string(cfg), "\n") {
				if strings.HasPrefix(line, "configfile ") {
					fmt.Printf("%s: pinned: %s\n", name, line)
				}
			}
		case ok:
			fmt.Printf("%s: generic first stage\n", name)
		default:
			fmt.Printf("%s: not a first-stage name\n", name)
		}
	}
	// Output:
	// grub/grub.cfg-01-52-54-00-12-34-56: pinned: configfile '/grub?mac=52:54:00:12:34:56&arch='"${grub_cpu}"
	// grub/grub.cfg-0A630064: generic first stage
	// grub/grub.cfg: generic first stage
	// grub/x86_64-efi/core.efi: not a first-stage name
}

// Quote makes any value one literal GRUB word.
func ExampleQuote() {
	fmt.Println(grubcfg.Quote("console=ttyS0"))
	fmt.Println(grubcfg.Quote("url=http://x/ignition?uuid=&mac=52-54-00-12-34-56"))
	fmt.Println(grubcfg.Quote("it's; reboot"))
	// Output:
	// 'console=ttyS0'
	// 'url=http://x/ignition?uuid=&mac=52-54-00-12-34-56'
	// 'it'\''s; reboot'
}

// A TFTP server for GRUB: FirstStageTFTP answers the first-stage names
// GRUB asks for, the TFTP root made by MakeNetDir everything else.
func ExampleFirstStageTFTP() {
	h, err := grubcfg.FirstStageTFTP(grubcfg.FirstStage{HTTPAddr: "10.99.0.1:8080"}, func(mac hwaddr.MAC, client netip.AddrPort) {
		fmt.Printf("%s is at %s\n", mac, client.Addr())
	})
	if err != nil {
		panic(err)
	}
	// srv := &tftpsrv.Server{FS: fsys, Handler: h}; here the handler alone:
	client := netip.MustParseAddrPort("10.99.0.100:2001")
	for _, name := range []string{"grub/grub.cfg-01-52-54-00-12-34-56", "grub/grub.cfg", "grub/x86_64-efi/normal.mod"} {
		cfg, err := h.ServeTFTP(context.Background(), &tftpsrv.Request{Filename: name, Client: client})
		if errors.Is(err, tftpsrv.ErrNotHandled) {
			fmt.Printf("%s: from the TFTP root\n", name)
			continue
		}
		for _, line := range strings.Split(string(cfg), "\n") {
			if strings.HasPrefix(line, "configfile ") {
				fmt.Printf("%s: %s\n", name, line)
			}
		}
	}
	// Output:
	// 52:54:00:12:34:56 is at 10.99.0.100
	// grub/grub.cfg-01-52-54-00-12-34-56: configfile '/grub?mac=52:54:00:12:34:56&arch='"${grub_cpu}"
	// grub/grub.cfg: configfile "/grub?mac=${net_default_mac}&arch=${grub_cpu}"
	// grub/x86_64-efi/normal.mod: from the TFTP root
}

// MakeNetDir writes GRUB's network images where dhcpsrv's default boot
// policy points the firmware, and says what it skipped. (Not run here: it
// needs Debian's grub-common, grub-pc-bin and grub-efi-amd64-bin.)
func ExampleMakeNetDir() {
	nd, err := grubcfg.MakeNetDir(context.Background(), "/srv/metalboot/tftp", grubcfg.NetDirOptions{HTTPHost: "10.99.0.1:8080"})
	if errors.Is(err, grubcfg.ErrNoGRUB) {
		fmt.Println("install GRUB:", err)
		return
	}
	if err != nil {
		panic(err)
	}
	for _, p := range nd.Made {
		fmt.Println("made", p)
	}
	for _, s := range nd.Skipped {
		fmt.Println("skipped", s)
	}
	fmt.Println("BIOS clients get", nd.BootFiles[dhcpsrv.ArchBIOS])
}
