// Package dhcpsrv is a DHCPv4 server for network boot (stages 1–2 of the
// metalboot boot flow): it leases addresses from pools and reservations,
// answers the boot file and next server chosen by the client's
// architecture, keeps leases in a crash-safe journal, serves relayed
// requests (giaddr) from several subnets, and can run as a proxyDHCP
// server beside an existing DHCP server.
package dhcpsrv
