package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/metalboot/metalboot/dhcpsrv"
	"github.com/metalboot/metalboot/dhcpsrv/hwaddr"
)

// Config is labserver's configuration file (YAML). Flags override it.
// Omitted keys take the demo defaults; an empty address disables a service.
type Config struct {
	HTTP     *string `yaml:"http"`
	TFTP     *string `yaml:"tftp"`
	DNS      *string `yaml:"dns"`
	BaseURL  string  `yaml:"base_url"`
	Data     string  `yaml:"data"`
	Assets   string  `yaml:"assets"`
	TFTPRoot string  `yaml:"tftp_root"`
	State    string  `yaml:"state"`
	LogLevel string  `yaml:"log_level"`
	// GRUB console options for generated configs.
	Serial      *bool `yaml:"serial"`
	SerialSpeed int   `yaml:"serial_speed"`
	// AdminAllow lists networks allowed to ask for state changes (POST
	// /machines/{mac}/reinstall and /installed) and to fetch any machine's
	// Ignition config (default: loopback only).
	AdminAllow []string `yaml:"admin_allow"`
	// IgnitionClients says who may fetch a machine's Ignition config:
	// "leased" (only the address this server's DHCP leased to that MAC, and
	// admin_allow) or "any". Default: "leased" when labserver runs DHCP
	// (not proxy), "any" otherwise.
	IgnitionClients string `yaml:"ignition_clients"`
	// BootLoader is what machines boot with: "grub" (default: labserver's
	// DHCP hands GRUB's images) or "ipxe" (firmware gets the iPXE binary,
	// iPXE gets /boot.ipxe). A group's metadata "boot_loader" overrides it
	// for its machines.
	BootLoader string `yaml:"boot_loader"`
	// SecureBoot makes DHCP hand UEFI x86-64 machines that boot with GRUB
	// the Secure Boot chain (shim → Debian-signed GRUB → signed kernel,
	// all over TFTP) instead of the unsigned GRUB image. A group's
	// metadata "secure_boot" (true or false) overrides it for its
	// machines.
	SecureBoot bool      `yaml:"secure_boot"`
	DNSConfig  DNSConfig `yaml:"dns_zone"`
	DHCP       *DHCP     `yaml:"dhcp"`
	// Store shares leases with other labservers through etcd (etcd.go);
	// omitted: files under state, nothing shared.
	Store *StoreConfig `yaml:"store"`

	file string
	root *yaml.Node
}

// DNSConfig configures the lab zone.
type DNSConfig struct {
	Domain    string            `yaml:"domain"`    // default: dhcp.domain, else "lab"
	Upstreams []string          `yaml:"upstreams"` // host:port; empty: REFUSED for other names
	Records   map[string]string `yaml:"records"`   // extra name: address
	Allow     []string          `yaml:"allow"`     // client networks answered (default: loopback + lab subnet)
}

// DHCP configures the DHCP server; omitted means DHCP off.
type DHCP struct {
	Interface string   `yaml:"interface"`
	ServerIP  string   `yaml:"server_ip"`
	Subnet    string   `yaml:"subnet"`
	Range     []string `yaml:"range"`
	Router    string   `yaml:"router"`
	DNS       []string `yaml:"dns"`
	Domain    string   `yaml:"domain"`
	LeaseTime string   `yaml:"lease_time"`
	// LeaseSync is when an ACKed lease reaches the disk: "ack" (default:
	// fsync before every ACK) or a duration like "1s" (written before the
	// ACK, fsynced within that time: a killed process loses nothing, a
	// power cut the last interval; Kea's memfile and dnsmasq never fsync).
	LeaseSync string `yaml:"lease_sync"`
	Proxy     bool   `yaml:"proxy"`
	// EndIPv6Wait answers IPv6 router solicitations on the interface with
	// an advertisement that configures nothing, so iPXE boots at once
	// instead of waiting ~15 s for an IPv6 router; silent while another
	// router advertises on the segment. Default true.
	EndIPv6Wait  *bool             `yaml:"end_ipv6_wait"`
	Reservations []Reservation     `yaml:"reservations"`
	BootFiles    map[string]string `yaml:"boot_files"` // bios, efi64, arm64, http, arm64-http
}

// Reservation is a fixed address for a MAC, in addition to those the
// inventory names (group metadata "ip" and "hostname").
type Reservation struct {
	MAC      string `yaml:"mac"`
	IP       string `yaml:"ip"`
	Hostname string `yaml:"hostname"`
}

// configError names the file, the line and the key.
type configError struct {
	file string
	line int
	key  string
	err  error
}

func (e *configError) Error() string {
	if e.line > 0 {
		return fmt.Sprintf("%s: line %d: %s: %v", e.file, e.line, e.key, e.err)
	}
	return fmt.Sprintf("%s: %s: %v", e.file, e.key, e.err)
}

func (e *configError) Unwrap() error { return e.err }

// loadConfig reads and validates a config file. Unknown keys are errors.
func loadConfig(file string) (*Config, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	c := &Config{file: file}
	var root yaml.Node
	if err := yaml.Unmarshal(b, &root); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		msg := strings.TrimPrefix(err.Error(), "yaml: unmarshal errors:\n")
		return nil, fmt.Errorf("%s: %s", file, yamlErrors(&root, msg))
	}
	c.root = &root
	return c, nil
}

// line finds the line of a dotted key ("dhcp.range") in the file, 0 if
// unknown.
func (c *Config) line(key string) int {
	if c == nil || c.root == nil || len(c.root.Content) == 0 {
		return 0
	}
	n := c.root.Content[0]
	for _, part := range strings.Split(key, ".") {
		if n.Kind != yaml.MappingNode {
			return 0
		}
		var next *yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == part {
				next = n.Content[i+1]
				if next.Kind != yaml.MappingNode {
					return n.Content[i].Line
				}
			}
		}
		if next == nil {
			return 0
		}
		n = next
	}
	return n.Line
}

func (c *Config) errorf(key string, format string, args ...any) error {
	file := "flags"
	if c != nil && c.file != "" {
		file = c.file
	}
	return &configError{file: file, line: c.line(key), key: key, err: fmt.Errorf(format, args...)}
}

// settings are the validated, resolved values labserver runs with.
type settings struct {
	HTTP, TFTP, DNS string
	BaseURL         *url.URL
	baseDerived     bool // BaseURL comes from the HTTP address, not the config
	Data, Assets    string
	TFTPRoot, State string
	// DiscardCorruptState moves a corrupt state file (leases, install
	// state) aside and starts empty instead of refusing to start.
	DiscardCorruptState bool
	Serial              bool
	SerialSpeed         int
	AdminAllow          []netip.Prefix
	IgnitionLeased      bool   // only the lease holder (and admin_allow) gets a machine's config
	BootLoader          string // loaderGRUB or loaderIPXE: the lab's default
	SecureBoot          bool   // the lab's default: UEFI x64 GRUB machines get shim
	Domain              string
	Upstreams           []string
	Records             map[string]netip.Addr
	DNSAllow            []netip.Prefix
	DHCP                *dhcpSettings
	Store               *storeSettings // nil: no etcd (etcd.go)
}

type dhcpSettings struct {
	Interface    string
	ServerIP     netip.Addr
	Subnet       netip.Prefix
	Range        [2]netip.Addr
	Router       netip.Addr
	DNS          []netip.Addr
	Domain       string
	LeaseTime    time.Duration
	LeaseSync    time.Duration // 0: fsync before every ACK
	Proxy        bool
	EndIPv6Wait  bool
	Reservations map[hwaddr.MAC]Reservation
	BootFiles    map[string]string
}

func validateAddr(c *Config, key, v string) error {
	if v == "" {
		return nil
	}
	host, port, err := net.SplitHostPort(v)
	if err != nil {
		return c.errorf(key, "%q: want host:port (empty disables)", v)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		return c.errorf(key, "%q: bad port", v)
	}
	if host != "" {
		if _, err := netip.ParseAddr(host); err != nil {
			return c.errorf(key, "%q: host must be an IP address", v)
		}
	}
	return nil
}

func parsePrefixes(c *Config, key string, in []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range in {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, c.errorf(key, "%q: want a CIDR network like 10.99.0.0/24", s)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// resolve validates c and computes settings.
func (c *Config) resolve() (*settings, error) {
	s := &settings{
		HTTP: "127.0.0.1:8080", TFTP: "127.0.0.1:6969", DNS: "127.0.0.1:5353",
		Data: c.Data, Assets: c.Assets, TFTPRoot: c.TFTPRoot, State: c.State,
		Serial: true, SerialSpeed: 115200, Upstreams: c.DNSConfig.Upstreams,
		Records: map[string]netip.Addr{},
	}
	if c.HTTP != nil {
		s.HTTP = *c.HTTP
	}
	if c.TFTP != nil {
		s.TFTP = *c.TFTP
	}
	if c.DNS != nil {
		s.DNS = *c.DNS
	}
	for key, v := range map[string]string{"http": s.HTTP, "tftp": s.TFTP, "dns": s.DNS} {
		if err := validateAddr(c, key, v); err != nil {
			return nil, err
		}
	}
	if s.HTTP == "" {
		return nil, c.errorf("http", "the HTTP server cannot be disabled: GRUB and Ignition are served over it")
	}
	if c.Serial != nil {
		s.Serial = *c.Serial
	}
	if c.SerialSpeed != 0 {
		if c.SerialSpeed < 1200 || c.SerialSpeed > 4000000 {
			return nil, c.errorf("serial_speed", "%d: not a serial speed", c.SerialSpeed)
		}
		s.SerialSpeed = c.SerialSpeed
	}
	base := c.BaseURL
	if base == "" {
		host, port, _ := net.SplitHostPort(s.HTTP)
		if host == "" || host == "0.0.0.0" || host == "::" {
			return nil, c.errorf("base_url", "required when http listens on all addresses (%q): machines must know where to reach the server", s.HTTP)
		}
		base = "http://" + net.JoinHostPort(host, port)
		s.baseDerived = true
	}
	u, err := url.Parse(base)
	if err != nil || u.Scheme != "http" || u.Host == "" || u.RawQuery != "" {
		return nil, c.errorf("base_url", "%q: want http://host:port (GRUB has no TLS)", base)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	s.BaseURL = u
	for key, dir := range map[string]string{"data": s.Data, "assets": s.Assets, "tftp_root": s.TFTPRoot} {
		if dir == "" {
			continue
		}
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			return nil, c.errorf(key, "%q: not a directory", dir)
		}
	}
	if s.AdminAllow, err = parsePrefixes(c, "admin_allow", c.AdminAllow); err != nil {
		return nil, err
	}
	if len(s.AdminAllow) == 0 {
		s.AdminAllow = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	}
	if s.DNSAllow, err = parsePrefixes(c, "dns_zone.allow", c.DNSConfig.Allow); err != nil {
		return nil, err
	}
	for _, up := range s.Upstreams {
		if _, _, err := net.SplitHostPort(up); err != nil {
			return nil, c.errorf("dns_zone.upstreams", "%q: want host:port", up)
		}
	}
	for name, v := range c.DNSConfig.Records {
		ip, err := netip.ParseAddr(v)
		if err != nil {
			return nil, c.errorf("dns_zone.records", "%s: %q is not an IP address", name, v)
		}
		s.Records[name] = ip
	}
	if c.DHCP != nil {
		d, err := c.resolveDHCP()
		if err != nil {
			return nil, err
		}
		s.DHCP = d
	}
	switch c.IgnitionClients {
	case "":
		s.IgnitionLeased = s.DHCP != nil && !s.DHCP.Proxy
	case "leased":
		if s.DHCP == nil || s.DHCP.Proxy {
			return nil, c.errorf("ignition_clients", `"leased" needs labserver's own DHCP (a dhcp block without proxy): it alone knows which address holds which MAC; use "any" for relayed or proxyDHCP labs`)
		}
		s.IgnitionLeased = true
	case "any":
	default:
		return nil, c.errorf("ignition_clients", "%q: want leased or any", c.IgnitionClients)
	}
	s.SecureBoot = c.SecureBoot
	if s.Store, err = c.resolveStore(); err != nil {
		return nil, err
	}
	if s.BootLoader, err = parseLoader(c.BootLoader); err != nil {
		return nil, c.errorf("boot_loader", "%v", err)
	}
	s.Domain = c.DNSConfig.Domain
	if s.Domain == "" && s.DHCP != nil {
		s.Domain = s.DHCP.Domain
	}
	if s.Domain == "" {
		s.Domain = "lab"
	}
	return s, nil
}

func (c *Config) resolveDHCP() (*dhcpSettings, error) {
	in := c.DHCP
	d := &dhcpSettings{Interface: in.Interface, Domain: in.Domain, Proxy: in.Proxy, LeaseTime: time.Hour, EndIPv6Wait: in.EndIPv6Wait == nil || *in.EndIPv6Wait,
		Reservations: map[hwaddr.MAC]Reservation{}, BootFiles: in.BootFiles}
	var err error
	if in.Interface == "" {
		return nil, c.errorf("dhcp.interface", "required: the interface DHCP listens on (never guessed)")
	}
	if d.ServerIP, err = netip.ParseAddr(in.ServerIP); err != nil || !d.ServerIP.Is4() {
		return nil, c.errorf("dhcp.server_ip", "%q: want an IPv4 address", in.ServerIP)
	}
	if d.Subnet, err = netip.ParsePrefix(in.Subnet); err != nil || !d.Subnet.Addr().Is4() {
		return nil, c.errorf("dhcp.subnet", "%q: want an IPv4 network like 10.99.0.0/24", in.Subnet)
	}
	d.Subnet = d.Subnet.Masked()
	if !d.Subnet.Contains(d.ServerIP) {
		return nil, c.errorf("dhcp.server_ip", "%s is outside dhcp.subnet %s", d.ServerIP, d.Subnet)
	}
	if !in.Proxy {
		if len(in.Range) != 2 {
			return nil, c.errorf("dhcp.range", "want [first, last]")
		}
		for i, r := range in.Range {
			a, err := netip.ParseAddr(r)
			if err != nil || !d.Subnet.Contains(a) {
				return nil, c.errorf("dhcp.range", "%q: want an address inside %s", r, d.Subnet)
			}
			d.Range[i] = a
		}
		if d.Range[1].Less(d.Range[0]) {
			return nil, c.errorf("dhcp.range", "first %s is after last %s", d.Range[0], d.Range[1])
		}
	}
	if in.Router != "" {
		if d.Router, err = netip.ParseAddr(in.Router); err != nil {
			return nil, c.errorf("dhcp.router", "%q: not an IP address", in.Router)
		}
	}
	for _, s := range in.DNS {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, c.errorf("dhcp.dns", "%q: not an IP address", s)
		}
		d.DNS = append(d.DNS, a)
	}
	if in.LeaseTime != "" {
		if d.LeaseTime, err = time.ParseDuration(in.LeaseTime); err != nil || d.LeaseTime < time.Minute {
			return nil, c.errorf("dhcp.lease_time", "%q: want a duration of at least 1m, like 1h", in.LeaseTime)
		}
	}
	if in.LeaseSync != "" && in.LeaseSync != "ack" {
		if d.LeaseSync, err = time.ParseDuration(in.LeaseSync); err != nil || d.LeaseSync <= 0 || d.LeaseSync > time.Minute {
			return nil, c.errorf("dhcp.lease_sync", "%q: want \"ack\" (fsync before every ACK) or a duration up to 1m, like 1s", in.LeaseSync)
		}
	}
	for _, r := range in.Reservations {
		m, err := hwaddr.Parse(r.MAC)
		if err != nil {
			return nil, c.errorf("dhcp.reservations", "%v", err)
		}
		a, err := netip.ParseAddr(r.IP)
		if err != nil || !d.Subnet.Contains(a) {
			return nil, c.errorf("dhcp.reservations", "%s: ip %q: want an address inside %s", m, r.IP, d.Subnet)
		}
		d.Reservations[m] = r
	}
	if _, err := dhcpsrv.BootFilesByName(in.BootFiles); err != nil {
		return nil, c.errorf("dhcp.boot_files", "%v", err)
	}
	return d, nil
}
