package grubcfg_test

import (
	"context"
	"fmt"
	"net/netip"
	"strings"

	"github.com/metalboot/metalboot/grubcfg"
	"github.com/metalboot/metalboot/profile"
	"github.com/metalboot/metalboot/tftpsrv"
)

// A Secure Boot machine's GRUB (Debian's signed image) has no http: its
// first stage (FirstStage.TFTP) asks TFTP for grub?mac=<MAC>, which a
// TFTPConfigHandler answers with what /grub would, kernel and initrd over
// TFTP from the assets tree. Serve it beside the first stage with
// tftpsrv.Chain, and the assets with tftpsrv.Mount:
//
//	srv := &tftpsrv.Server{FS: mounted, Handler: tftpsrv.Chain(first, perMachine)}
func ExampleTFTPConfigHandler() {
	inv, err := profile.New(profile.Data{
		Profiles: []profile.Profile{{ID: "debian", Name: "Debian (signed)", Boot: profile.Boot{
			Kernel: "/assets/vmlinuz", Initrd: []string{"/assets/initrd.img"},
			Args: []string{"ignition.config.url={{.BaseURL}}/ignition?mac={{.MAC}}"}}}},
		Groups: []profile.Group{{ID: "node1", Profile: "debian", Selector: map[string]string{"mac": "52:54:00:12:34:56"}}},
	})
	if err != nil {
		panic(err)
	}
	res := &profile.Resolver{Store: inv, BaseURL: "http://10.99.0.1:8080"}
	opts := grubcfg.Options{TFTP: &grubcfg.TFTPFiles{HTTPHost: "10.99.0.1:8080"}}
	if probs := grubcfg.CheckTFTP(inv, *opts.TFTP, nil); len(probs) > 0 {
		panic(probs[0].Error()) // at load: a profile the signed GRUB cannot boot
	}
	perMachine := &grubcfg.TFTPConfigHandler{Handler: &grubcfg.Handler{Resolver: res, Options: opts}}

	cfg, err := perMachine.ServeTFTP(context.Background(), &tftpsrv.Request{
		Filename: "grub?mac=52:54:00:12:34:56", Client: netip.MustParseAddrPort("10.99.0.100:1024")})
	if err != nil {
		panic(err)
	}
	for _, line := range strings.Split(string(cfg), "\n") {
		if strings.HasPrefix(line, "menuentry") && strings.Contains(line, "BIOS") {
			break
		}
		if strings.HasPrefix(strings.TrimSpace(line), "linux") || strings.HasPrefix(strings.TrimSpace(line), "initrd") {
			fmt.Println(strings.TrimSpace(line))
		}
	}
	first, _ := grubcfg.FirstStage{HTTPAddr: "10.99.0.1:8080", TFTP: true}.Render()
	for _, line := range strings.Split(string(first), "\n") {
		if strings.Contains(line, "configfile") {
			fmt.Println(strings.TrimSpace(line))
		}
	}
	// Output:
	// linux '(tftp)/assets/vmlinuz' 'ignition.config.url=http://10.99.0.1:8080/ignition?mac=52:54:00:12:34:56'
	// initrd '(tftp)/assets/initrd.img'
	// configfile "/grub?mac=${net_default_mac}&arch=${grub_cpu}"
	// configfile "(tftp)/grub?mac=${net_default_mac}&arch=${grub_cpu}"
}
