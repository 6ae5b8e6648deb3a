package ipxe_test

import (
	"fmt"
	"io"
	"net/http/httptest"
	"os"

	"github.com/metalboot/metalboot/grubcfg/ipxe"
	"github.com/metalboot/metalboot/profile"
)

// Serve /ipxe for a matchbox-style Fedora CoreOS profile and ask for one
// machine's script, as the boot script does: the initrd keeps its name,
// initrd=main reaches the kernel, and iPXE's variables are the machine's
// values.
func ExampleHandler() {
	inv, err := profile.New(profile.Data{
		Profiles: []profile.Profile{{ID: "fcos", Boot: profile.Boot{
			Kernel: "/assets/fcos/kernel",
			Initrd: []string{"--name main /assets/fcos/initramfs.img"},
			Args:   []string{"initrd=main", "ignition.config.url=http://10.99.0.1:8080/ignition?mac=${mac:hexhyp}"},
		}}},
		Groups: []profile.Group{{ID: "workers", Profile: "fcos"}},
	})
	if err != nil {
		panic(err)
	}
	h := &ipxe.Handler{Resolver: &profile.Resolver{Store: inv, BaseURL: "http://10.99.0.1:8080"}}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/ipxe?uuid=&mac=52-54-00-12-34-56&arch=x86_64", nil))
	fmt.Println(rec.Code)
	_, _ = io.Copy(os.Stdout, rec.Body)
	// Output:
	// 200
	// #!ipxe
	// # metalboot: generated for one machine, do not edit
	// echo metalboot: machine 52:54:00:12:34:56, group workers, profile fcos
	// echo metalboot: loading kernel http://10.99.0.1:8080/assets/fcos/kernel
	// kernel http://10.99.0.1:8080/assets/fcos/kernel initrd=main ignition.config.url=http://10.99.0.1:8080/ignition?mac=52-54-00-12-34-56 || goto metalboot_failed
	// echo metalboot: loading initrd main from http://10.99.0.1:8080/assets/fcos/initramfs.img
	// initrd --name main http://10.99.0.1:8080/assets/fcos/initramfs.img || goto metalboot_failed
	// boot || goto metalboot_failed
	//
	// :metalboot_failed
	// echo metalboot: booting profile fcos failed; returning to the firmware, which goes on with its next boot option
	// exit 1
}

// The script a DHCP server hands iPXE clients (/boot.ipxe): it reports
// the machine's attributes to /ipxe and runs the script it gets.
func ExampleBootScript() {
	b, err := ipxe.BootScript("http://10.99.0.1:8080")
	if err != nil {
		panic(err)
	}
	fmt.Print(string(b))
	// Output:
	// #!ipxe
	// # metalboot: report this machine's attributes, then run its own script
	// imgfetch --name metalboot http://10.99.0.1:8080/ipxe?uuid=${uuid}&mac=${mac:hexhyp}&domain=${domain:uristring}&hostname=${hostname:uristring}&serial=${serial:uristring}&arch=${buildarch:uristring} || imgfetch --name metalboot http://10.99.0.1:8080/ipxe?uuid=${uuid}&mac=${mac:hexhyp}&arch=${buildarch:uristring} || goto metalboot_failed
	// imgexec metalboot || goto metalboot_failed
	//
	// :metalboot_failed
	// echo metalboot: no network boot from http://10.99.0.1:8080/ipxe for this machine (the server's /machines page says why); returning to the firmware
	// exit 1
}

// Word writes any string without white space as one iPXE word; Literal
// refuses what iPXE would expand.
func ExampleWord() {
	for _, s := range []string{"console=ttyS0", "#not-a-comment", "||", `C:\`} {
		w, _ := ipxe.Word(s)
		fmt.Println(w)
	}
	_, err := ipxe.Literal("${password}")
	fmt.Println(err)
	// Output:
	// console=ttyS0
	// ${}#not-a-comment
	// ${}||
	// C:\${}
	// cannot be written as one iPXE word: "${password}": iPXE would expand its ${…} and has no escape for it
}
