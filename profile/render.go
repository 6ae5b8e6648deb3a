package profile

import (
	"fmt"
	"maps"
	"net/netip"
	"regexp"
	"strings"
	"text/template"

	"github.com/metalboot/metalboot/internal/hwaddr"
)

// Machine is what one request resolves to: the machine's known facts, the
// matched group and profile. Templates in the profile render against it.
type Machine struct {
	// MAC is the machine's address; zero when the request had none.
	MAC hwaddr.MAC
	// UUID is the SMBIOS UUID (from the request or the DHCP lease), lower
	// case 8-4-4-4-12, or "".
	UUID string
	// Hostname is from the request, the group's "hostname" metadata or the
	// DHCP lease, or "".
	Hostname string
	// IP is the machine's address from the DHCP lease or the group's "ip"
	// metadata, if known.
	IP netip.Addr
	// BaseURL is the server's URL as machines reach it, without trailing
	// slash, e.g. "http://10.99.0.1:8080".
	BaseURL string
	// Attrs are the normalised request attributes used for matching.
	Attrs map[string]string
	// RawQuery is the request's query string as received (matchbox's
	// .request.raw_query).
	RawQuery string
	// Group and Profile are the match.
	Group   *Group
	Profile *Profile

	inv *Inventory
}

// Inventory returns the inventory the machine was matched in.
func (m *Machine) Inventory() *Inventory { return m.inv }

// TemplateData is what profile templates see: {{.MAC}}, {{.MACHyphen}},
// {{.MACRaw}}, {{.UUID}}, {{.Hostname}}, {{.IP}}, {{.BaseURL}},
// {{.Metadata.key}}, {{.Labels.key}} (request attributes), {{.Group}},
// {{.Profile}}.
type TemplateData struct {
	MAC       string
	MACHyphen string
	MACRaw    string
	UUID      string
	Hostname  string
	IP        string
	BaseURL   string
	Metadata  map[string]any
	Labels    map[string]string
	Group     string
	Profile   string
}

// Data returns the values templates render against.
func (m *Machine) Data() TemplateData {
	d := TemplateData{UUID: m.UUID, Hostname: m.Hostname, BaseURL: m.BaseURL, Labels: m.Attrs}
	if !m.MAC.IsZero() {
		d.MAC, d.MACHyphen, d.MACRaw = m.MAC.String(), m.MAC.Hyphen(), m.MAC.Raw()
	}
	if m.IP.IsValid() {
		d.IP = m.IP.String()
	}
	if m.Group != nil {
		d.Metadata, d.Group = m.Group.Metadata, m.Group.ID
	}
	if d.Metadata == nil {
		d.Metadata = map[string]any{}
	}
	if m.Profile != nil {
		d.Profile = m.Profile.ID
	}
	return d
}

// Render renders one profile string for this machine: boot-loader
// variables (iPXE's ${mac:hexhyp}, ${uuid}…, GRUB's $net_default_mac…) are
// replaced by the machine's known values, then the string is executed as a
// Go template against Data. A reference to a missing metadata key is an
// error, never "<no value>".
func (m *Machine) Render(s string) (string, error) {
	var t *template.Template
	if m.inv != nil {
		t = m.inv.compiled[s]
	}
	if t == nil {
		var err error
		t, err = compileString(s, nil)
		if err != nil {
			return "", err
		}
	}
	if t == plainText {
		return s, nil
	}
	var sb strings.Builder
	if err := t.Execute(&sb, m.Data()); err != nil {
		return "", fmt.Errorf("render %q: %w", s, err)
	}
	return sb.String(), nil
}

// RenderBoot renders the profile's kernel, initrds and args.
func (m *Machine) RenderBoot() (Boot, error) {
	var out Boot
	if m.Profile == nil {
		return out, nil
	}
	in := m.Profile.Boot
	var err error
	if out.Kernel, err = m.Render(in.Kernel); err != nil {
		return Boot{}, err
	}
	for _, s := range in.Initrd {
		r, err := m.Render(s)
		if err != nil {
			return Boot{}, err
		}
		out.Initrd = append(out.Initrd, r)
	}
	for _, s := range in.Args {
		r, err := m.Render(s)
		if err != nil {
			return Boot{}, err
		}
		if r != "" {
			out.Args = append(out.Args, r)
		}
	}
	return out, nil
}

// Metadata returns a copy of the group's metadata (empty when none).
func (m *Machine) Metadata() map[string]any {
	if m.Group == nil {
		return map[string]any{}
	}
	md := maps.Clone(m.Group.Metadata)
	if md == nil {
		md = map[string]any{}
	}
	return md
}

// plainText marks strings without template actions or variables.
var plainText = template.New("plain")

// bootVar matches iPXE (${name}, ${name:type}, ${net0/name}) and GRUB
// ($name, ${name}) variables.
var bootVar = regexp.MustCompile(`\$(\{[A-Za-z0-9_/.:-]+\}|[A-Za-z_][A-Za-z0-9_]*)`)

// bootVars maps boot-loader variables to the template field with the same
// meaning, for every boot loader the profile might have been written for.
var bootVars = map[string]string{
	// iPXE
	"mac": "MAC", "net0/mac": "MAC", "netX/mac": "MAC",
	"mac:hexhyp": "MACHyphen", "net0/mac:hexhyp": "MACHyphen", "netX/mac:hexhyp": "MACHyphen",
	"mac:hexraw": "MACRaw", "net0/mac:hexraw": "MACRaw", "netX/mac:hexraw": "MACRaw",
	"mac:hex": "MAC", "net0/mac:hex": "MAC",
	"uuid": "UUID", "smbios/uuid": "UUID",
	"hostname": "Hostname", "net0/hostname": "Hostname",
	"ip": "IP", "net0/ip": "IP", "netX/ip": "IP",
	// GRUB
	"net_default_mac": "MAC", "net_efinet0_mac": "MAC", "net_efinet0_dhcp_mac": "MAC",
	"net_pxe_mac": "MAC", "net_pxe_dhcp_mac": "MAC",
	"net_default_ip": "IP", "net_efinet0_ip": "IP", "net_pxe_ip": "IP",
	"net_efinet0_dhcp_hostname": "Hostname", "net_pxe_dhcp_hostname": "Hostname", "net_pxe_hostname": "Hostname",
}

// compile translates boot-loader variables into template actions and
// parses the result. found is called for each boot-loader variable seen.
func (inv *Inventory) compile(s string, found func(string)) (*template.Template, error) {
	if t, ok := inv.compiled[s]; ok {
		if found != nil {
			for _, v := range bootVar.FindAllString(s, -1) {
				if _, known := bootVars[strings.Trim(v, "${}")]; known {
					found(v)
				}
			}
		}
		return t, nil
	}
	t, err := compileString(s, found)
	if err != nil {
		return nil, err
	}
	inv.compiled[s] = t
	return t, nil
}

func compileString(s string, found func(string)) (*template.Template, error) {
	if !strings.ContainsAny(s, "${") {
		return plainText, nil
	}
	src := bootVar.ReplaceAllStringFunc(s, func(v string) string {
		name := strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(v, "$"), "{"), "}")
		field, ok := bootVars[name]
		if !ok {
			return v
		}
		if found != nil {
			found(v)
		}
		return "{{." + field + "}}"
	})
	return template.New("").Option("missingkey=error").Parse(src)
}
