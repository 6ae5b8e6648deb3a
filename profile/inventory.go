package profile

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"sort"
	"strings"

	"github.com/metalboot/metalboot/dhcpsrv/hwaddr"
	"github.com/metalboot/metalboot/internal/par"
)

// ErrNoMatch is returned by Inventory.Match when no group matches.
var ErrNoMatch = errors.New("no matching group")

// ErrInvalid is wrapped by every validation error of an inventory.
var ErrInvalid = errors.New("invalid inventory")

// Data is the raw material of an inventory, for building one in Go instead
// of loading a data directory.
type Data struct {
	Profiles []Profile
	Groups   []Group
	// Templates holds the files of ignition/ by name (e.g.
	// "install.yaml.tmpl"): Ignition JSON or Butane YAML templates.
	Templates map[string][]byte
	// Generic holds the files of generic/ by name.
	Generic map[string][]byte
}

// Warning is a problem in the inventory that does not stop it from loading,
// e.g. a profile whose JSON id disagrees with its file name.
type Warning struct {
	File string
	Msg  string
}

// String formats the warning as "file: message".
func (w Warning) String() string {
	if w.File == "" {
		return w.Msg
	}
	return w.File + ": " + w.Msg
}

// Host is a machine the inventory names: a group whose selector has a MAC
// and whose metadata has "hostname" and/or "ip". DNS and DHCP reservations
// are fed from these.
type Host struct {
	MAC      hwaddr.MAC
	Hostname string
	IP       netip.Addr
	Group    string
}

// Inventory is an immutable, validated set of profiles, groups and
// templates. It is safe for concurrent use. An Inventory is also a Store
// that always returns itself.
type Inventory struct {
	profiles  map[string]*Profile
	groups    []*Group // most specific first
	templates map[string][]byte
	generic   map[string][]byte
	compiled  map[string]*bootTemplate
	warnings  []Warning
	hosts     []Host
	hostMAC   map[hwaddr.MAC]int // index into hosts
	hostIP    map[netip.Addr]int // index into hosts; the first by MAC
	// Match's index: the positions in groups of the groups whose selector
	// names a MAC, by that MAC, and of all the others, each ascending.
	byMAC      map[string][]int
	withoutMAC []int
}

// Inventory implements Store.
func (inv *Inventory) Inventory() *Inventory { return inv }

// Profile returns a profile by ID.
func (inv *Inventory) Profile(id string) (*Profile, bool) {
	p, ok := inv.profiles[id]
	return p, ok
}

// Profiles returns every profile, sorted by ID.
func (inv *Inventory) Profiles() []*Profile {
	out := slices.Collect(maps.Values(inv.profiles))
	slices.SortFunc(out, func(a, b *Profile) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// Groups returns every group, most specific first (ties by ID).
func (inv *Inventory) Groups() []*Group { return slices.Clone(inv.groups) }

// Template returns the content of a file under ignition/.
func (inv *Inventory) Template(name string) ([]byte, bool) {
	b, ok := inv.templates[name]
	return b, ok
}

// TemplateNames lists the files under ignition/, sorted.
func (inv *Inventory) TemplateNames() []string {
	return slices.Sorted(maps.Keys(inv.templates))
}

// Generic returns the content of a file under generic/.
func (inv *Inventory) Generic(name string) ([]byte, bool) {
	b, ok := inv.generic[name]
	return b, ok
}

// Warnings lists what was odd but not fatal when the inventory was built.
func (inv *Inventory) Warnings() []Warning { return slices.Clone(inv.warnings) }

// Hosts lists machines named by groups with a "mac" selector and a
// "hostname" and/or "ip" metadata value, sorted by MAC.
func (inv *Inventory) Hosts() []Host { return slices.Clone(inv.hosts) }

// Host returns the machine with this MAC among [Inventory.Hosts], in
// constant time and without copying the list, so a per-request lookup
// (a DHCP reservation source reading the store's current inventory on
// every request, which makes a reload reach DHCP at once) costs a map
// lookup.
func (inv *Inventory) Host(mac hwaddr.MAC) (Host, bool) {
	i, ok := inv.hostMAC[mac]
	if !ok {
		return Host{}, false
	}
	return inv.hosts[i], true
}

// HostByIP returns the machine whose "ip" metadata is ip among
// [Inventory.Hosts] (the first by MAC when several name the same
// address), e.g. to tell a DHCP server which MAC an address is reserved
// for. IPv4-mapped IPv6 addresses are looked up as IPv4.
func (inv *Inventory) HostByIP(ip netip.Addr) (Host, bool) {
	i, ok := inv.hostIP[ip.Unmap()]
	if !ok {
		return Host{}, false
	}
	return inv.hosts[i], true
}

// Match returns the most specific group whose selector the attributes
// satisfy, and its profile. attrs must be normalised (see ParseQuery or
// Normalize). It returns an error wrapping ErrNoMatch when none matches.
func (inv *Inventory) Match(attrs map[string]string) (*Group, *Profile, error) {
	// Only groups that name this MAC, or no MAC at all, can match: merge
	// the two lists in the order of groups (most specific first), so a lab
	// of 100 000 per-MAC groups costs a map lookup, not a scan.
	a, b := inv.byMAC[attrs[KeyMAC]], inv.withoutMAC
	for len(a) > 0 || len(b) > 0 {
		var i int
		if len(b) == 0 || (len(a) > 0 && a[0] < b[0]) {
			i, a = a[0], a[1:]
		} else {
			i, b = b[0], b[1:]
		}
		if g := inv.groups[i]; selects(g.Selector, attrs) {
			return g, inv.profiles[g.Profile], nil
		}
	}
	return nil, nil, fmt.Errorf("%w for %s", ErrNoMatch, describe(attrs))
}

// indexGroups builds Match's index; groups must be in their final order.
func (inv *Inventory) indexGroups() {
	inv.byMAC = map[string][]int{}
	inv.withoutMAC = nil
	for i, g := range inv.groups {
		if m, ok := g.Selector[KeyMAC]; ok {
			inv.byMAC[m] = append(inv.byMAC[m], i)
		} else {
			inv.withoutMAC = append(inv.withoutMAC, i)
		}
	}
}

func selects(sel, attrs map[string]string) bool {
	for k, v := range sel {
		if attrs[k] != v {
			return false
		}
	}
	return true
}

func describe(attrs map[string]string) string {
	if len(attrs) == 0 {
		return "a request without attributes"
	}
	keys := slices.Sorted(maps.Keys(attrs))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + attrs[k]
	}
	return strings.Join(parts, " ")
}

// New validates d and builds an inventory. Every problem is reported, each
// naming the profile or group (and its file when loaded from one); on error
// no inventory is returned.
func New(d Data) (*Inventory, error) {
	b := builder{inv: &Inventory{
		profiles:  map[string]*Profile{},
		templates: map[string][]byte{},
		generic:   map[string][]byte{},
		compiled:  map[string]*bootTemplate{},
	}}
	return b.build(d)
}

type builder struct {
	inv  *Inventory
	errs []error
	// selectors holds every group's selector (project over its own sorted
	// keys), for shadowed.
	selectors map[string]bool
	// groupIDs: the groups added so far, by ID.
	groupIDs map[string]*Group
}

func (b *builder) errorf(src, id, format string, args ...any) {
	b.errs = append(b.errs, errAt(src, id, format, args...))
}

// errAt is an ErrInvalid error about src (the file), or id when there is
// no file.
func errAt(src, id, format string, args ...any) error {
	where := src
	if where == "" {
		where = id
	}
	return fmt.Errorf("%w: %s: %s", ErrInvalid, where, fmt.Sprintf(format, args...))
}

func (b *builder) warn(src, format string, args ...any) {
	b.inv.warnings = append(b.inv.warnings, Warning{File: src, Msg: fmt.Sprintf(format, args...)})
}

func (b *builder) build(d Data) (*Inventory, error) {
	inv := b.inv
	maps.Copy(inv.templates, d.Templates)
	maps.Copy(inv.generic, d.Generic)
	for i := range d.Profiles {
		p := d.Profiles[i]
		p.Boot.Initrd = slices.Clone(p.Boot.Initrd)
		p.Boot.Args = slices.Clone(p.Boot.Args)
		b.addProfile(&p)
	}
	for i := range d.Groups {
		g := d.Groups[i]
		b.addGroup(&g)
	}
	b.checkTies() // sorts the groups: most specific first
	if len(b.errs) > 0 {
		return nil, errors.Join(b.errs...)
	}
	inv.indexGroups()
	b.checkRender()
	if len(b.errs) > 0 {
		return nil, errors.Join(b.errs...)
	}
	b.collectHosts()
	return inv, nil
}

func (b *builder) addProfile(p *Profile) {
	inv := b.inv
	if p.ID == "" {
		b.errorf(p.Source, "", "profile without id")
		return
	}
	if !validID(p.ID) {
		b.errorf(p.Source, p.ID, "profile id %q: use letters, digits, '.', '_' and '-'", p.ID)
		return
	}
	if old, dup := inv.profiles[p.ID]; dup {
		b.errorf(p.Source, p.ID, "profile %q defined twice (also in %s)", p.ID, orGo(old.Source))
		return
	}
	if p.Boot.Kernel == "" && (len(p.Boot.Initrd) > 0 || len(p.Boot.Args) > 0) {
		b.errorf(p.Source, p.ID, "profile %q: boot has initrd or args but no kernel", p.ID)
	}
	if p.Boot.Kernel == "" && p.IgnitionID == "" && p.GenericID == "" {
		b.errorf(p.Source, p.ID, "profile %q: empty: needs boot.kernel, ignition_id or generic_id", p.ID)
	}
	if p.IgnitionID != "" {
		if _, ok := inv.templates[p.IgnitionID]; !ok {
			b.errorf(p.Source, p.ID, "profile %q: ignition_id %q: no such file under ignition/", p.ID, p.IgnitionID)
		}
	}
	if p.GenericID != "" {
		if _, ok := inv.generic[p.GenericID]; !ok {
			b.errorf(p.Source, p.ID, "profile %q: generic_id %q: no such file under generic/", p.ID, p.GenericID)
		}
	}
	for _, s := range p.Boot.strings() {
		for _, v := range bootVar.FindAllString(s, -1) {
			if _, known := bootVars[strings.Trim(v, "${}")]; !known && strings.HasPrefix(v, "${") {
				b.warn(p.Source, "profile %q: %s is not a variable metalboot renders: iPXE expands it on the machine, GRUB gets it as written", p.ID, v)
			}
		}
		bt, err := inv.compile(s, func(v string) {
			b.warn(p.Source, "boot-loader variable %s is rendered by the server from the matched machine", v)
		})
		if err != nil {
			b.errorf(p.Source, p.ID, "profile %q: template %q: %v", p.ID, s, err)
			continue
		}
		for _, u := range bt.uses {
			what := "every value from the network"
			if u.Root != "" {
				what = "{{." + u.Root + "}}"
			}
			b.warn(p.Source, "profile %q: %q uses %s in logic (%s): rendered with the real value, which must first pass the kernel command line's check", p.ID, s, what, u.What)
		}
	}
	inv.profiles[p.ID] = p
}

func (bt Boot) strings() []string {
	out := make([]string, 0, 1+len(bt.Initrd)+len(bt.Args))
	if bt.Kernel != "" {
		out = append(out, bt.Kernel)
	}
	out = append(out, bt.Initrd...)
	return append(out, bt.Args...)
}

func (b *builder) addGroup(g *Group) {
	inv := b.inv
	if g.ID == "" {
		b.errorf(g.Source, "", "group without id")
		return
	}
	if g.Profile == "" {
		b.errorf(g.Source, g.ID, "group %q: no profile", g.ID)
		return
	}
	if _, ok := inv.profiles[g.Profile]; !ok {
		b.errorf(g.Source, g.ID, "group %q: unknown profile %q", g.ID, g.Profile)
		return
	}
	if o, dup := b.groupIDs[g.ID]; dup {
		b.errorf(g.Source, g.ID, "group %q defined twice (also in %s)", g.ID, orGo(o.Source))
		return
	}
	sel := make(map[string]string, len(g.Selector))
	for k, v := range g.Selector {
		nk, nv, err := normalizeAttr(k, v)
		if err == nil && nv == "" {
			err = fmt.Errorf("%s: empty value (leave the key out to match any)", nk)
		}
		if err == nil {
			if _, dup := sel[nk]; dup {
				err = fmt.Errorf("%s given twice (keys are case-insensitive)", nk)
			}
		}
		if err != nil {
			b.errorf(g.Source, g.ID, "group %q: selector: %v", g.ID, err)
			return
		}
		sel[nk] = nv
	}
	g.Selector = sel
	g.Metadata = maps.Clone(g.Metadata)
	inv.groups = append(inv.groups, g)
	if b.groupIDs == nil {
		b.groupIDs = map[string]*Group{}
	}
	b.groupIDs[g.ID] = g
}

// checkTies reports pairs of equally specific groups that one request can
// satisfy both: the winner would be arbitrary.
func (b *builder) checkTies() {
	// Most specific first, then by ID: the order Match tries them in.
	gs := b.inv.groups
	sort.SliceStable(gs, func(i, j int) bool {
		if len(gs[i].Selector) != len(gs[j].Selector) {
			return len(gs[i].Selector) > len(gs[j].Selector)
		}
		return gs[i].ID < gs[j].ID
	})
	// Groups by size, then by key set: two groups of one key set can tie
	// only when their selectors are equal; groups of two key sets only
	// when they agree on the keys they share, found through an index on
	// those keys. So a lab of 100 000 per-MAC groups costs a map lookup
	// per group, not a comparison per pair.
	type keySet struct {
		keys   []string
		groups []*Group
	}
	bySize := map[int]map[string]*keySet{}
	b.selectors = map[string]bool{}
	for _, g := range b.inv.groups {
		keys := slices.Sorted(maps.Keys(g.Selector))
		name := strings.Join(keys, "\x00")
		if bySize[len(keys)] == nil {
			bySize[len(keys)] = map[string]*keySet{}
		}
		ks := bySize[len(keys)][name]
		if ks == nil {
			ks = &keySet{keys: keys}
			bySize[len(keys)][name] = ks
		}
		ks.groups = append(ks.groups, g)
		b.selectors[project(g.Selector, keys)] = true
	}
	type tie struct{ x, y *Group }
	var ties []tie
	report := func(x, y *Group) {
		if !b.shadowed(x.Selector, y.Selector) {
			if y.ID < x.ID {
				x, y = y, x
			}
			ties = append(ties, tie{x, y})
		}
	}
	const maxTies = 100 // a broken layout ties everything: name the first
	for _, sets := range bySize {
		all := slices.SortedFunc(maps.Values(sets), func(a, b *keySet) int { return slices.Compare(a.keys, b.keys) })
		for i, s1 := range all {
			same := map[string]*Group{}
			for _, g := range s1.groups {
				k := project(g.Selector, s1.keys)
				if h, dup := same[k]; dup {
					report(h, g)
				} else {
					same[k] = g
				}
			}
			for _, s2 := range all[i+1:] {
				common := intersect(s1.keys, s2.keys)
				idx := map[string][]*Group{}
				for _, g := range s2.groups {
					k := project(g.Selector, common)
					idx[k] = append(idx[k], g)
				}
				for _, g := range s1.groups {
					for _, h := range idx[project(g.Selector, common)] {
						report(g, h)
						if len(ties) >= maxTies {
							break
						}
					}
				}
			}
		}
	}
	slices.SortFunc(ties, func(a, c tie) int {
		if d := len(c.x.Selector) - len(a.x.Selector); d != 0 {
			return d
		}
		if d := strings.Compare(a.x.ID, c.x.ID); d != 0 {
			return d
		}
		return strings.Compare(a.y.ID, c.y.ID)
	})
	for _, t := range ties {
		b.errs = append(b.errs, fmt.Errorf("%w: groups %q (%s) and %q (%s) are equally specific and can match the same request (%s); make one selector more specific",
			ErrInvalid, t.x.ID, orGo(t.x.Source), t.y.ID, orGo(t.y.Source), describe(union(t.x.Selector, t.y.Selector))))
	}
}

// project renders sel's values for keys (sorted) as one map key.
func project(sel map[string]string, keys []string) string {
	var sb strings.Builder
	for _, k := range keys {
		sb.WriteString(k)
		sb.WriteByte(0)
		sb.WriteString(sel[k])
		sb.WriteByte(0)
	}
	return sb.String()
}

func intersect(a, b []string) []string {
	var out []string
	for _, k := range a {
		if slices.Contains(b, k) {
			out = append(out, k)
		}
	}
	return out
}

// shadowed reports whether a more specific group wins every request that
// both x and y match: any such request carries x∪y, so a group whose
// selector is a subset of x∪y and has more keys than x (and y) matches it
// too and beats both. mac+os beats mac and os alone, for example, which
// lets a default "os=installed" group live beside per-MAC groups. It looks
// the candidate subsets up in the index of selectors checkTies built.
func (b *builder) shadowed(x, y map[string]string) bool {
	u := union(x, y)
	keys := slices.Sorted(maps.Keys(u))
	if len(keys) > 16 {
		for _, g := range b.inv.groups {
			if len(g.Selector) > len(x) && len(g.Selector) <= len(u) && selects(g.Selector, u) {
				return true
			}
		}
		return false
	}
	for mask := 1; mask < 1<<len(keys); mask++ {
		var sub []string
		for i, k := range keys {
			if mask&(1<<i) != 0 {
				sub = append(sub, k)
			}
		}
		if len(sub) > len(x) && b.selectors[project(u, sub)] {
			return true
		}
	}
	return false
}

func compatible(a, b map[string]string) bool {
	for k, v := range a {
		if w, ok := b[k]; ok && w != v {
			return false
		}
	}
	return true
}

func union(a, b map[string]string) map[string]string {
	u := maps.Clone(a)
	maps.Copy(u, b)
	return u
}

// checkRender renders every group's profile once against a sample machine,
// so a template that refers to a missing metadata key fails at load time,
// not when the machine boots.
//
// Each rendered initrd entry must parse (ParseInitrd: a location, or
// iPXE's "--name NAME location"); an "initrd=NAME" kernel argument that
// names none of the profile's initrds is a warning (a boot loader that
// hands initrds to the kernel by name could not honour it).
func (b *builder) checkRender() {
	// Each group's sample machine renders its boot, in parallel; problems
	// are reported in the groups' order.
	type result struct {
		err   error
		bad   []error // initrd problems
		names map[string]bool
		args  []string
	}
	groups := b.inv.groups
	res := make([]result, len(groups))
	one := func(i int) {
		g := groups[i]
		p := b.inv.profiles[g.Profile]
		boot, err := b.inv.SampleMachine(g).RenderBoot()
		if err != nil {
			res[i].err = errAt(g.Source, g.ID, "group %q with profile %q: %v", g.ID, p.ID, err)
			return
		}
		names := map[string]bool{}
		for _, s := range boot.Initrd {
			in, err := ParseInitrd(s)
			if err != nil {
				res[i].bad = append(res[i].bad, errAt(p.Source, p.ID, "profile %q (group %q): initrd: %v", p.ID, g.ID, err))
				continue
			}
			names[strings.ToLower(in.FileName())] = true
		}
		res[i].names, res[i].args = names, boot.Args
	}
	par.Do(len(groups), 256, one)
	warned := map[string]bool{}
	for i, r := range res {
		if r.err != nil {
			b.errs = append(b.errs, r.err)
			continue
		}
		b.errs = append(b.errs, r.bad...)
		p := b.inv.profiles[groups[i].Profile]
		for _, a := range r.args {
			if name, ok := InitrdArg(a); ok && !r.names[strings.ToLower(name)] && !warned[p.ID+"\x00"+a] {
				warned[p.ID+"\x00"+a] = true
				b.warn(p.Source, "profile %q: kernel argument %q names no initrd of the profile (its initrds are named %s): metalboot renders initrd= for each loader itself, so this argument is dropped", p.ID, a, describeNames(r.names))
			}
		}
	}
}

func describeNames(names map[string]bool) string {
	if len(names) == 0 {
		return "nothing: it has none"
	}
	return strings.Join(slices.Sorted(maps.Keys(names)), ", ")
}

// SampleHostname is the hostname of a SampleMachine whose group names
// none.
const SampleHostname = "sample"

// SampleMAC is the MAC of a SampleMachine whose group's selector names
// none.
var SampleMAC = hwaddr.MAC{0x02, 0, 0, 0, 0, 1}

// SampleMachine returns a machine group g of this inventory could match,
// for renderers that check at load time that every group's profile
// renders (New does for templates; grubcfg and its ipxe package for
// what each boot loader can load): the selector's attributes, its MAC or
// SampleMAC, the group's "hostname" metadata or SampleHostname, BaseURL
// "http://metalboot.invalid". g must be one of the inventory's groups.
func (inv *Inventory) SampleMachine(g *Group) *Machine {
	m := &Machine{
		MAC:      SampleMAC,
		Attrs:    maps.Clone(g.Selector),
		Group:    g,
		Profile:  inv.profiles[g.Profile],
		BaseURL:  "http://metalboot.invalid",
		inv:      inv,
		Hostname: SampleHostname,
	}
	if m.Attrs == nil {
		m.Attrs = map[string]string{}
	}
	if s, ok := g.Selector[KeyMAC]; ok {
		if mac, err := hwaddr.Parse(s); err == nil {
			m.MAC = mac
		}
	}
	m.Attrs[KeyMAC] = m.MAC.String()
	if s, ok := g.Selector[KeyUUID]; ok {
		m.UUID = s
	}
	if s, ok := g.Metadata["hostname"].(string); ok && s != "" {
		m.Hostname = s
	}
	if s, ok := g.Selector[KeyHostname]; ok {
		m.Hostname = s
	}
	return m
}

func (b *builder) collectHosts() {
	seen := map[hwaddr.MAC]bool{}
	for _, g := range b.inv.groups {
		mac, ok := g.Selector[KeyMAC]
		if !ok {
			continue
		}
		h := Host{MAC: hwaddr.MustParse(mac), Group: g.ID}
		if s, ok := g.Metadata["hostname"].(string); ok {
			h.Hostname = s
		}
		if s, ok := g.Metadata["ip"].(string); ok {
			ip, err := netip.ParseAddr(s)
			if err != nil {
				b.warn(g.Source, "metadata ip %q: %v", s, err)
			} else {
				h.IP = ip
			}
		}
		if h.Hostname == "" && !h.IP.IsValid() {
			continue
		}
		if seen[h.MAC] {
			continue // the same machine in several groups (install, installed)
		}
		seen[h.MAC] = true
		b.inv.hosts = append(b.inv.hosts, h)
	}
	// By MAC: the byte order is the order of the written form.
	slices.SortFunc(b.inv.hosts, func(a, c Host) int { return bytes.Compare(a.MAC[:], c.MAC[:]) })
	b.inv.hostMAC = make(map[hwaddr.MAC]int, len(b.inv.hosts))
	b.inv.hostIP = make(map[netip.Addr]int, len(b.inv.hosts))
	for i, h := range b.inv.hosts {
		b.inv.hostMAC[h.MAC] = i
		if h.IP.IsValid() {
			if _, dup := b.inv.hostIP[h.IP.Unmap()]; !dup {
				b.inv.hostIP[h.IP.Unmap()] = i
			}
		}
	}
}

func orGo(src string) string {
	if src == "" {
		return "built in Go"
	}
	return src
}

func validID(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
