package etcdstore_test

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/metalboot/metalboot/dhcpsrv"
	"github.com/metalboot/metalboot/dhcpsrv/etcdstore"
	"github.com/metalboot/metalboot/dhcpsrv/hwaddr"
)

// Two DHCP servers share one pool through etcd: a client that got its
// address from the first renews it at the second. (The test binary
// starts a 3-member etcd cluster for the example, and leaves the example
// out when etcd is not installed.)
func Example() {
	endpoints := shared.Endpoints() // e.g. []string{"https://etcd1:2379", …}
	ctx := context.Background()
	newServer := func(ip string) *dhcpsrv.Server {
		cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			panic(err)
		}
		store, err := etcdstore.Open(ctx, cli, etcdstore.Options{Prefix: "/example/"})
		if err != nil {
			panic(err)
		}
		return &dhcpsrv.Server{
			ServerIP: netip.MustParseAddr(ip),
			Subnets: []dhcpsrv.Subnet{{
				Prefix: netip.MustParsePrefix("10.99.0.0/24"),
				Ranges: []dhcpsrv.Range{{From: netip.MustParseAddr("10.99.0.100"), To: netip.MustParseAddr("10.99.0.200")}},
			}},
			Leases: store,
		}
	}
	a, b := newServer("10.99.0.1"), newServer("10.99.0.2")

	mac := hwaddr.MAC{0x52, 0x54, 0, 0x12, 0x34, 0x56}
	discover, _ := dhcpv4.NewDiscovery(mac.HardwareAddr())
	offer := a.Reply(ctx, discover)
	request, _ := dhcpv4.NewRequestFromOffer(offer)
	ack := a.Reply(ctx, request)
	fmt.Println("from a:", ack.MessageType())
	first := ack.YourIPAddr

	// Renewal (RFC 2131 4.3.2: ciaddr set, no server identifier) at b.
	renew, _ := dhcpv4.New(dhcpv4.WithHwAddr(mac.HardwareAddr()), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithClientIP(ack.YourIPAddr))
	ack = b.Reply(ctx, renew)
	fmt.Println("from b:", ack.MessageType(), "same address:", ack.YourIPAddr.Equal(first))
	// Output:
	// from a: ACK
	// from b: ACK same address: true
}
