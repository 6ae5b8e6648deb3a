// Command dhcpsrvd runs a dhcpsrv.Server configured by flags; used by the
// DHCP benchmark script (internal/bench/dhcp.sh).
//
//	dhcpsrvd -i br0 -server-ip 10.99.0.1 -subnet 10.99.0.0/16,10.99.1.0,10.99.250.255 -leases /tmp/leases
package main

import (
	"fmt"
	"os"

	"github.com/metalboot/metalboot/dhcpsrv/internal/daemon"
)

func main() {
	if err := daemon.Main(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "dhcpsrvd:", err)
		os.Exit(1)
	}
}
