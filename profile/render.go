package profile

import (
	"encoding/hex"
	"fmt"
	"maps"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/template"

	"github.com/metalboot/metalboot/dhcpsrv/hwaddr"
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

// Render renders one profile string (a kernel, initrd or argument) for
// this machine: boot-loader variables (iPXE's ${mac:hexhyp}, ${uuid}…,
// GRUB's $net_default_mac…) are replaced by the machine's known values,
// then the string is executed as a Go template against Data. A reference
// to a missing metadata key is an error, never "<no value>".
//
// Values from the network (MAC, MACHyphen, MACRaw, UUID, Hostname, IP,
// Labels) are encoded for the kernel command line by the renderer, not by
// the profile author's care: the template runs with a placeholder for each
// non-empty value, and each value then takes its placeholder's place after
// a check that it cannot add or end a kernel parameter. Linux splits its
// command line at white space outside double quotes and has no escape for
// '"', so a value with white space, '"', a control character or a
// non-ASCII byte cannot be encoded, nor one that makes a whole argument
// "--": the render fails with a *ValueError (wrapping ErrBadValue). A
// profile string that uses a network value in logic ({{eq .Hostname "x"}},
// {{printf "%s" .MAC}}; see FindLogicUses) runs with the real value
// instead, which must pass the same check first. Text from the profile and
// the group (metadata, BaseURL) is trusted and rendered as written.
func (m *Machine) Render(s string) (string, error) {
	r := m.renderer(s)
	return r.render(s)
}

// RenderBoot renders the profile's kernel, initrds and args (see Render);
// arguments that render empty are dropped.
func (m *Machine) RenderBoot() (Boot, error) {
	return m.RenderBootFor(Format{})
}

// Format is what rendered profile strings end up in besides the kernel
// command line, for a renderer whose syntax gives some bytes a meaning
// the kernel's check does not cover (iPXE expands "${…}" in every word,
// with no escape). The zero Format adds nothing.
type Format struct {
	// Name names the format in a ValueError, e.g. "iPXE script".
	Name string
	// Reason, when set, returns why a value from the network cannot be
	// carried in the format, or "" when it can. It is asked after the
	// kernel command line's check, for every value a string places.
	Reason func(value string) string
}

// RenderBootFor is RenderBoot for a boot loader whose syntax refuses more
// than the kernel command line does: every value from the network must
// also pass f.Reason, or the render fails with a *ValueError naming
// f.Name.
func (m *Machine) RenderBootFor(f Format) (Boot, error) {
	var out Boot
	if m.Profile == nil {
		return out, nil
	}
	in := m.Profile.Boot
	r := m.renderer(in.strings()...)
	if f.Reason != nil {
		r.format = &f
	}
	var err error
	if out.Kernel, err = r.render(in.Kernel); err != nil {
		return Boot{}, err
	}
	for _, s := range in.Initrd {
		x, err := r.render(s)
		if err != nil {
			return Boot{}, err
		}
		out.Initrd = append(out.Initrd, x)
	}
	for _, s := range in.Args {
		x, err := r.render(s)
		if err != nil {
			return Boot{}, err
		}
		if x != "" {
			out.Args = append(out.Args, x)
		}
	}
	return out, nil
}

// bootRenderer renders the strings of one machine with placeholders (see
// Render). Placeholders are "Xmb<n>z<id>Y": letters and digits only, so
// that no template text treats them specially; <n> is chosen so that
// "Xmb<n>z" occurs in none of the strings rendered and none of the
// values (metadata, BaseURL, IDs, and the machine's own), so every
// occurrence in the output is a placeholder; X and Y occur nowhere else in a placeholder,
// so one cannot start inside another or straddle it. Trusted text that
// only forms "Xmb<n>z" where two trusted pieces meet would be taken for a
// placeholder: an unknown id is left alone, a known one would put a
// value (still checked) in its place.
type bootRenderer struct {
	m       *Machine
	data    TemplateData
	sources []string
	prefix  string
	scalars [6]placed // MAC … IP, by their index in rootNames
	labels  []placed
	format  *Format // an extra check for every value, or nil
}

// placed is a value a placeholder stands for.
type placed struct {
	id    string // for labels: "l" and the key in hex
	field string
	value string
}

func (m *Machine) renderer(sources ...string) *bootRenderer {
	return &bootRenderer{m: m, data: m.Data(), sources: sources}
}

func (r *bootRenderer) render(s string) (string, error) {
	bt, err := r.m.bootTemplate(s)
	if err != nil {
		return "", err
	}
	if bt.t == nil {
		return s, nil
	}
	if bt.refs&(1<<0|1<<1|1<<2) != 0 && r.data.MAC == "" {
		// A config for "no machine" (ignition.config.url=…?mac=) would
		// fail only later, after kernel and initrd were downloaded.
		return "", fmt.Errorf("render %q: %w", s, &ValueError{Field: "MAC", Format: kernelCmdline,
			Reason: "the request names no machine (mac= missing or empty) and this profile uses its MAC"})
	}
	for i, name := range rootNames {
		if bt.logic&(1<<i) != 0 {
			if err := r.strict(name); err != nil {
				return "", fmt.Errorf("render %q: %w", s, err)
			}
		}
	}
	d := r.data
	need := bt.refs &^ bt.logic
	if need != 0 {
		d = r.placeholders(need)
	}
	var sb strings.Builder
	if err := bt.t.Execute(&sb, d); err != nil {
		return "", fmt.Errorf("render %q: %w", s, err)
	}
	out := sb.String()
	field := ""
	if need != 0 && strings.Contains(out, r.prefix) {
		if out, field, err = r.substitute(out); err != nil {
			return "", fmt.Errorf("render %q: %w", s, err)
		}
	}
	if out == "--" && !strings.Contains(s, "--") {
		if field == "" {
			field = r.holding(out, bt.logic)
		}
		return "", fmt.Errorf("render %q: %w", s, &ValueError{Field: field, Value: out, Format: kernelCmdline,
			Reason: `a bare "--" ends the kernel's parameters`})
	}
	return out, nil
}

// holding names the first field among roots whose value is v ("argument"
// when none is).
func (r *bootRenderer) holding(v string, roots rootSet) string {
	for i, name := range rootNames {
		if roots&(1<<i) == 0 {
			continue
		}
		if name == "Labels" {
			for _, k := range slices.Sorted(maps.Keys(r.data.Labels)) {
				if r.data.Labels[k] == v {
					return "Labels." + k
				}
			}
		} else if *r.data.field(name) == v {
			return name
		}
	}
	return "argument"
}

const kernelCmdline = "kernel command line"

// kernelReason says why v cannot be put in a kernel command line argument
// without changing where parameters begin and end, or "" when it can.
func kernelReason(v string) string {
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r':
			return "white space separates kernel parameters"
		case c == '"':
			return `'"' switches the kernel's quoting and has no escape`
		case c < 0x20 || c == 0x7f:
			return "control character"
		case c >= 0x80:
			return "non-ASCII byte"
		}
	}
	return ""
}

func checkKernel(field, v string) error {
	if reason := kernelReason(v); reason != "" {
		return &ValueError{Field: field, Value: v, Format: kernelCmdline, Reason: reason}
	}
	return nil
}

// check runs the kernel command line's check on a value, then the
// format's.
func (r *bootRenderer) check(field, v string) error {
	if err := checkKernel(field, v); err != nil {
		return err
	}
	if r.format != nil {
		if reason := r.format.Reason(v); reason != "" {
			return &ValueError{Field: field, Value: v, Format: r.format.Name, Reason: reason}
		}
	}
	return nil
}

// strict checks every value of a root that a string uses in logic.
func (r *bootRenderer) strict(root string) error {
	if root == "Labels" {
		for _, k := range slices.Sorted(maps.Keys(r.data.Labels)) {
			if err := r.check("Labels."+k, r.data.Labels[k]); err != nil {
				return err
			}
		}
		return nil
	}
	return r.check(root, *r.data.field(root))
}

// field returns the scalar field of d with that name.
func (d *TemplateData) field(name string) *string {
	switch name {
	case "MAC":
		return &d.MAC
	case "MACHyphen":
		return &d.MACHyphen
	case "MACRaw":
		return &d.MACRaw
	case "UUID":
		return &d.UUID
	case "Hostname":
		return &d.Hostname
	case "IP":
		return &d.IP
	}
	panic("profile: unknown field " + name)
}

// placeholders returns the data with a placeholder for every non-empty
// value of the roots in need.
func (r *bootRenderer) placeholders(need rootSet) TemplateData {
	if r.prefix == "" {
		r.prefix = r.choosePrefix()
	}
	d := r.data
	for i, name := range rootNames {
		if need&(1<<i) == 0 {
			continue
		}
		if name == "Labels" {
			if len(d.Labels) == 0 {
				continue
			}
			labels := make(map[string]string, len(d.Labels))
			r.labels = r.labels[:0]
			for k, v := range d.Labels {
				if v != "" {
					p := placed{id: "l" + hex.EncodeToString([]byte(k)), field: "Labels." + k, value: v}
					r.labels = append(r.labels, p)
					v = r.prefix + p.id + "Y"
				}
				labels[k] = v
			}
			d.Labels = labels
			continue
		}
		if f := d.field(name); *f != "" {
			r.scalars[i] = placed{id: string(rune('a' + i)), field: name, value: *f}
			*f = r.prefix + r.scalars[i].id + "Y"
		}
	}
	return d
}

// lookup returns the value a placeholder id stands for.
func (r *bootRenderer) lookup(id string) (placed, bool) {
	if len(id) == 1 && id[0] >= 'a' && int(id[0]-'a') < len(r.scalars) {
		p := r.scalars[id[0]-'a']
		return p, p.id != ""
	}
	for _, p := range r.labels {
		if p.id == id {
			return p, true
		}
	}
	return placed{}, false
}

// substitute replaces each placeholder in out by its value, checked for
// the kernel command line, in one pass (values are not scanned again). It
// also returns the field of the last value placed.
func (r *bootRenderer) substitute(out string) (string, string, error) {
	var b strings.Builder
	b.Grow(len(out) + 32)
	field := ""
	for {
		i := strings.Index(out, r.prefix)
		if i < 0 {
			b.WriteString(out)
			return b.String(), field, nil
		}
		rest := out[i+len(r.prefix):]
		j := strings.IndexByte(rest, 'Y')
		if j < 0 {
			b.WriteString(out)
			return b.String(), field, nil
		}
		p, ok := r.lookup(rest[:j])
		if !ok {
			b.WriteString(out[:i+len(r.prefix)]) // not a placeholder: trusted text
			out = rest
			continue
		}
		if err := r.check(p.field, p.value); err != nil {
			return "", "", err
		}
		b.WriteString(out[:i])
		b.WriteString(p.value)
		field = p.field
		out = rest[j+1:]
	}
}

// choosePrefix returns the first "Xmb<n>z" that occurs in none of the
// strings and none of the values, trusted or not (fields used in logic
// are rendered real, so their values reach the output as they are).
func (r *bootRenderer) choosePrefix() string {
	d := &r.data
	for n := 0; ; n++ {
		p := "Xmb" + strconv.Itoa(n) + "z"
		in := func(s string) bool { return strings.Contains(s, p) }
		if !slices.ContainsFunc(r.sources, in) && !slices.ContainsFunc([]string{d.BaseURL, d.Group, d.Profile,
			d.MAC, d.MACHyphen, d.MACRaw, d.UUID, d.Hostname, d.IP}, in) &&
			!anyString(d.Metadata, in) && !anyString(d.Labels, in) {
			return p
		}
	}
}

// anyString reports whether f holds for a string in v (metadata: strings,
// maps and slices, nested; map keys included).
func anyString(v any, f func(string) bool) bool {
	switch v := v.(type) {
	case string:
		return f(v)
	case map[string]any:
		for k, x := range v {
			if f(k) || anyString(x, f) {
				return true
			}
		}
	case []any:
		for _, x := range v {
			if anyString(x, f) {
				return true
			}
		}
	case map[string]string:
		for k, x := range v {
			if f(k) || f(x) {
				return true
			}
		}
	case []string:
		return slices.ContainsFunc(v, f)
	}
	return false
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

// rootSet is a set of the template fields that hold values from the
// network, by their index in rootNames.
type rootSet uint8

var rootNames = [...]string{"MAC", "MACHyphen", "MACRaw", "UUID", "Hostname", "IP", "Labels"}

// bootLeaf classifies a field chain of a profile string for
// FindLogicUses.
func bootLeaf(field []string) (string, bool) {
	switch field[0] {
	case "MAC", "MACHyphen", "MACRaw", "UUID", "Hostname", "IP":
		return field[0], len(field) == 1
	case "Labels":
		return "Labels", len(field) == 2
	}
	return "", false
}

func rootIndex(name string) rootSet {
	for i, n := range rootNames {
		if n == name {
			return 1 << i
		}
	}
	return 0
}

// bootTemplate is one compiled profile string.
type bootTemplate struct {
	t     *template.Template // nil: plain text
	refs  rootSet            // network fields the string reads at all
	logic rootSet            // those it uses in logic: rendered real
	uses  []LogicUse
}

var plainText = &bootTemplate{}

// bootTemplate returns the compiled form of s.
func (m *Machine) bootTemplate(s string) (*bootTemplate, error) {
	if m.inv != nil {
		if bt := m.inv.compiled[s]; bt != nil {
			return bt, nil
		}
	}
	return compileString(s, nil)
}

// compile translates boot-loader variables into template actions and
// parses the result. found is called for each boot-loader variable seen.
func (inv *Inventory) compile(s string, found func(string)) (*bootTemplate, error) {
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

func compileString(s string, found func(string)) (*bootTemplate, error) {
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
	t, err := template.New("").Option("missingkey=error").Parse(src)
	if err != nil {
		return nil, err
	}
	bt := &bootTemplate{t: t, uses: FindLogicUses(t, bootLeaf)}
	for _, u := range bt.uses {
		if u.Root == "" {
			bt.logic = 1<<len(rootNames) - 1
		}
		bt.logic |= rootIndex(u.Root)
	}
	for _, tt := range t.Templates() {
		if tt.Tree != nil {
			walkFields(tt.Tree.Root, func(field []string) {
				if len(field) == 0 {
					bt.refs = 1<<len(rootNames) - 1
				} else if root, _ := bootLeaf(field); root != "" {
					bt.refs |= rootIndex(root)
				}
			})
		}
	}
	return bt, nil
}
