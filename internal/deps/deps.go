package deps

import (
	_ "github.com/coreos/butane/config"
	_ "github.com/coreos/ignition/v2/config/v3_4"
	_ "github.com/insomniacslk/dhcp/dhcpv4/server4"
	_ "github.com/miekg/dns"
	_ "github.com/pin/tftp/v3"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/stretchr/testify/require"
	_ "go.yaml.in/yaml/v3"
)
