// Package demo embeds the demo inventory that examples/labserver serves when
// started without a data directory: a small lab with its server deploy.lab
// (172.22.10.2) and three machines,
//
//	mp.lab    172.22.10.50  00:23:32:2f:40:3c  UEFI, installs Flatcar to /dev/sda
//	smpc.lab  172.22.10.54  00:30:48:fb:e2:44  BIOS, installs Flatcar to /dev/sdb
//	arm.lab   172.22.10.56  d8:3a:dd:48:2b:10  UEFI ARM64, installs Flatcar for
//	                                          ARM64 to /dev/vda; its groups
//	                                          select {"mac", "arch": "arm64"}
//
// (arch is what GRUB's first stage, iPXE and the DHCP lease report, see
// profile.KeyArch; a request for arm.lab's MAC without it gets the
// default group),
// plus a default group for any other machine. It is a matchbox-compatible
// data directory (profiles/, groups/, ignition/), so it also serves as an
// example of one; metadata carries "hostname" and "ip", which labserver
// turns into DNS records and DHCP reservations.
package demo

import (
	"embed"
	"io/fs"
	"net/netip"
)

//go:embed data
var data embed.FS

// FS returns the demo data directory.
func FS() fs.FS {
	sub, err := fs.Sub(data, "data")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	return sub
}

// The demo lab's addresses.
var (
	// Subnet is the demo lab's network.
	Subnet = netip.MustParsePrefix("172.22.10.0/24")
	// ServerIP is deploy.lab, the machine that runs labserver.
	ServerIP = netip.MustParseAddr("172.22.10.2")
)

// Domain is the demo lab's DNS zone.
const Domain = "lab"

// ServerName is the fully qualified name of the demo lab's server.
const ServerName = "deploy.lab"
