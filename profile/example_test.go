package profile_test

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/metalboot/metalboot/dhcpsrv/hwaddr"
	"github.com/metalboot/metalboot/profile"
	"github.com/metalboot/metalboot/profile/demo"
)

// A profile written for iPXE renders with the machine's real values, so it
// works under GRUB too: the server knows the MAC from the request.
func Example() {
	inv, err := profile.New(profile.Data{
		Profiles: []profile.Profile{{
			ID: "install",
			Boot: profile.Boot{
				Kernel: "/assets/vmlinuz",
				Args:   []string{"config.url={{.BaseURL}}/ignition?uuid=${uuid}&mac=${mac:hexhyp}", "disk={{.Metadata.disk}}"},
			},
		}},
		Groups: []profile.Group{{ID: "default", Profile: "install", Metadata: map[string]any{"disk": "/dev/sda"}}},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, w := range inv.Warnings() {
		fmt.Println("warning:", w)
	}
	r := &profile.Resolver{Store: inv, BaseURL: "http://10.99.0.1:8080"}
	attrs, err := profile.ParseQuery("mac=52:54:00:AB:CD:EF&uuid=4C4C4544-0043-3010-8058-B4C04F4C4E32")
	if err != nil {
		fmt.Println(err)
		return
	}
	m, err := r.Resolve(context.Background(), attrs, "")
	if err != nil {
		fmt.Println(err)
		return
	}
	boot, err := m.RenderBoot()
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(boot.Kernel)
	for _, a := range boot.Args {
		fmt.Println(a)
	}
	// Output:
	// warning: boot-loader variable ${uuid} is rendered by the server from the matched machine
	// warning: boot-loader variable ${mac:hexhyp} is rendered by the server from the matched machine
	// /assets/vmlinuz
	// config.url=http://10.99.0.1:8080/ignition?uuid=4c4c4544-0043-3010-8058-b4c04f4c4e32&mac=52-54-00-ab-cd-ef
	// disk=/dev/sda
}

// OpenFS loads a matchbox-compatible data directory; here the embedded demo.
func ExampleOpenFS() {
	store, err := profile.OpenFS(demo.FS(), nil, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, h := range store.Inventory().Hosts() {
		fmt.Println(h.MAC, h.Hostname, h.IP)
	}
	g, p, err := store.Inventory().Match(map[string]string{"mac": "00:30:48:fb:e2:44", "os": "installed"})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(g.ID, p.ID)
	// Output:
	// 00:23:32:2f:40:3c mp.lab 172.22.10.50
	// 00:30:48:fb:e2:44 smpc.lab 172.22.10.54
	// d8:3a:dd:48:2b:10 arm.lab 172.22.10.56
	// smpc-installed installed
}

// A DHCP reservation source reads the store's current inventory on every
// request, so a reload (SIGHUP, a watched backend) reaches DHCP at once.
func ExampleInventory_Host() {
	store, err := profile.OpenFS(demo.FS(), nil, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	reservation := func(mac hwaddr.MAC) (netip.Addr, string, bool) {
		h, ok := store.Inventory().Host(mac)
		if !ok || !h.IP.IsValid() {
			return netip.Addr{}, "", false
		}
		return h.IP, h.Hostname, true
	}
	fmt.Println(reservation(hwaddr.MustParse("00-23-32-2F-40-3C")))
	fmt.Println(reservation(hwaddr.MustParse("52:54:00:00:00:01")))
	h, _ := store.Inventory().HostByIP(netip.MustParseAddr("172.22.10.54"))
	fmt.Println(h.MAC, h.Hostname)
	// Output:
	// 172.22.10.50 mp.lab true
	// invalid IP  false
	// 00:30:48:fb:e2:44 smpc.lab
}
