package ignition

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	butaneutil "github.com/coreos/butane/base/util"
	"github.com/vincent-petithory/dataurl"

	"github.com/metalboot/metalboot/dhcpsrv/hwaddr"
	"github.com/metalboot/metalboot/profile"
)

// How values from the network reach a config.
//
// The fields of Data that hold values from the network (MAC, MACHyphen,
// MACRaw, UUID, Hostname, IP, Labels, request.query, request.raw_query)
// are never written into the Butane or JSON text. The template runs with
// a placeholder for each non-empty value instead: "Xmb<n>z<id>Y", letters
// and digits only, which YAML and JSON carry as plain text wherever the
// template puts it. The text is translated (Butane) and validated as
// usual; the placeholders end up inside JSON strings of the Ignition
// config, possibly inside data URLs (file contents). Then each string that
// holds placeholders is rebuilt with the real values, JSON-encoded, and
// each data URL re-encoded with Butane's own MakeDataURL; the config is
// validated again. A value thus lands inside a string, never in the
// config's structure: no quote, newline or YAML in a hostname can add a
// file, a unit or a user.
//
// The prefix "Xmb<n>z" is chosen per render so that it occurs in neither
// the template nor any value of the data (metadata, selector, BaseURL, the
// machine's own values): every occurrence in the output is a placeholder,
// unless two pieces of trusted text happen to form one where they meet
// (then the config fails to render; it never gets a value in a wrong
// place unchecked). X and Y occur nowhere else in
// a placeholder, so one cannot start inside another. Because the text with
// placeholders is the same for every machine of a group, the translation
// cache (keyed by that text) serves new machines too.
//
// A template that uses a value in logic (profile.FindLogicUses: an
// argument of eq or printf, with, range, a variable…) would compare or
// format a placeholder; such fields are rendered with their real value,
// after strict validation for their kind (strictValue), and Check warns.

// netRoots are the fields of Data that hold values from the network.
var netRoots = [...]string{"MAC", "MACHyphen", "MACRaw", "UUID", "Hostname", "IP", "Labels", "request"}

type rootSet uint16

const allRoots rootSet = 1<<len(netRoots) - 1

func rootBit(name string) rootSet {
	for i, n := range netRoots {
		if n == name {
			return 1 << i
		}
	}
	return 0
}

// netLeaf classifies a field chain for profile.FindLogicUses.
func netLeaf(field []string) (string, bool) {
	switch field[0] {
	case "MAC", "MACHyphen", "MACRaw", "UUID", "Hostname", "IP":
		return field[0], len(field) == 1
	case "Labels":
		return field[0], len(field) == 2
	case "request":
		return field[0], len(field) == 2 && field[1] == "raw_query" || len(field) == 3 && field[1] == "query"
	}
	return "", false
}

// placed is a value a placeholder stands for.
type placed struct {
	field string
	value string
	// trusted: a metadata value, placed as it is (it is where translation
	// with the real value would have put it, see "Metadata").
	trusted bool
}

// values are the placeholders of one render.
type values struct {
	prefix string
	byID   map[string]placed
	// trusted lists the placeholders of metadata values.
	trusted []string
}

func (v *values) add(id, field, value string) string {
	v.byID[id] = placed{field: field, value: value}
	return v.prefix + id + "Y"
}

func (v *values) addTrusted(id, field, value string) string {
	v.byID[id] = placed{field: field, value: value, trusted: true}
	tok := v.prefix + id + "Y"
	v.trusted = append(v.trusted, tok)
	return tok
}

// hasTrusted reports whether v holds metadata placeholders.
func (v *values) hasTrusted() bool { return v != nil && len(v.trusted) > 0 }

// intact reports whether every metadata placeholder of the text is in the
// plan as often as in the text.
func (v *values) intact(text []byte, pl *plan) bool {
	for _, tok := range v.trusted {
		if bytes.Count(text, []byte(tok)) != pl.count(tok) {
			return false
		}
	}
	return true
}

// describe replaces placeholders in s by the fields they stand for, for
// error messages about the text.
func (v *values) describe(s string) string {
	if v == nil || v.prefix == "" {
		return s
	}
	var b strings.Builder
	for {
		i := strings.Index(s, v.prefix)
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		rest := s[i+len(v.prefix):]
		j := strings.IndexByte(rest, 'Y')
		if j < 0 {
			b.WriteString(s)
			return b.String()
		}
		if p, ok := v.byID[rest[:j]]; ok {
			b.WriteString(s[:i] + "{{." + p.field + "}}")
		} else {
			b.WriteString(s[:i+len(v.prefix)+j+1])
		}
		s = rest[j+1:]
	}
}

// placeholders returns data with placeholders for the values from the
// network, and the values they stand for. Fields the template uses in
// logic keep their real value, which must pass strictValue first (a
// *profile.ValueError otherwise). With meta, the metadata values the
// template prints whole (see Template.meta) get placeholders too when
// metaSafe holds, so that the text is the same for every group of a
// template whose metadata only fills strings (see "Metadata" below).
func (t *Template) placeholders(data map[string]any, meta bool) (map[string]any, *values, error) {
	for i, name := range netRoots {
		if t.logic&(1<<i) != 0 {
			if err := strictRoot(name, data[name]); err != nil {
				return nil, nil, err
			}
		}
	}
	need := allRoots &^ t.logic
	if need == 0 && (!meta || len(t.meta) == 0) {
		return data, nil, nil
	}
	v := &values{prefix: t.choosePrefix(data), byID: map[string]placed{}}
	out := maps.Clone(data)
	for i, name := range netRoots[:6] {
		if s, ok := data[name].(string); ok && s != "" && need&(1<<i) != 0 {
			out[name] = v.add(string(rune('a'+i)), name, s)
		}
	}
	if labels, ok := data["Labels"].(map[string]string); ok && need&rootBit("Labels") != 0 {
		out["Labels"] = placeMap(v, labels, "l", "Labels.")
	}
	if req, ok := data["request"].(map[string]any); ok && need&rootBit("request") != 0 {
		r := maps.Clone(req)
		if q, ok := req["query"].(map[string]string); ok {
			r["query"] = placeMap(v, q, "q", "request.query.")
		}
		if s, ok := req["raw_query"].(string); ok && s != "" {
			r["raw_query"] = v.add("r", "request.raw_query", s)
		}
		out["request"] = r
	}
	if meta {
		for _, k := range t.meta {
			if s, ok := data[k].(string); ok && metaSafe(s) {
				out[k] = v.addTrusted("m"+hex.EncodeToString([]byte(k))+metaProbe, k, s)
			}
		}
	}
	return out, v, nil
}

// Metadata.
//
// A group's metadata is trusted (the operator wrote it), and a template
// that only prints a metadata string ({{.hostname}}, never in logic)
// would otherwise make the text, and so the Butane translation, differ
// for every group: an inventory of 100 000 machines with a host name each
// would need 100 000 translations at load and as many on the first
// requests. So such values get placeholders too, and the text with
// placeholders is translated once for every group of the template. The
// output must stay byte-identical to translating the text with the real
// values, which holds when the value passes through YAML and Butane
// unchanged, as a placeholder does. Two rules make sure of it:
//
//   - Only values of metaSafe's characters get a placeholder: letters,
//     digits and "._/+=-", not starting with '-'. No YAML scalar style
//     alters these (no space, quote, backslash, '#', ':', ',' or bracket)
//     and none can start an indicator.
//   - The placeholder of a metadata value carries those characters too
//     (metaProbe), and the translation is used only if every placeholder
//     comes out of Butane intact and as often as the text has it. A
//     template where Butane escapes or drops them (a mount unit's name
//     derived from a path, a value in a comment) or where the placeholder
//     breaks the config (a number, an object key) is translated with the
//     real values instead, for that text from then on (errMetaFallback).
//
// A value that lands outside file contents is validated again after it
// is filled in, as values from the network are; validation is what
// translation with the real value would have done.

// metaProbe is carried by every metadata placeholder: the characters
// besides letters and digits a value may hold (see metaSafe).
const metaProbe = "-._/+="

// metaSafe reports whether a metadata value may be rendered as a
// placeholder: non-empty, letters, digits and the characters of
// metaProbe, not starting with '-' ("- " starts a YAML sequence entry).
func metaSafe(s string) bool {
	return s != "" && s[0] != '-' && onlyChars(s, metaProbe)
}

// errMetaFallback: the text with metadata placeholders cannot stand for
// the text with the real values; render with the real values.
var errMetaFallback = errors.New("ignition: metadata placeholders did not survive translation")

func placeMap(v *values, m map[string]string, id, field string) map[string]string {
	out := make(map[string]string, len(m))
	for k, s := range m {
		if s != "" {
			s = v.add(id+hex.EncodeToString([]byte(k)), field+k, s)
		}
		out[k] = s
	}
	return out
}

// choosePrefix returns the first "Xmb<n>z" that occurs neither in the
// template nor in any string of data (keys and nested maps and slices
// included; values from the network too, since fields used in logic are
// rendered real). For benign data it is "Xmb0z" for every machine, so the
// text with placeholders stays the same across a group.
func (t *Template) choosePrefix(data map[string]any) string {
	for n := 0; ; n++ {
		p := "Xmb" + strconv.Itoa(n) + "z"
		if !strings.Contains(t.src, p) && !anyString(data, p) {
			return p
		}
	}
}

func anyString(v any, p string) bool {
	switch v := v.(type) {
	case string:
		return strings.Contains(v, p)
	case map[string]any:
		for k, x := range v {
			if strings.Contains(k, p) || anyString(x, p) {
				return true
			}
		}
	case []any:
		for _, x := range v {
			if anyString(x, p) {
				return true
			}
		}
	case map[string]string:
		for k, x := range v {
			if strings.Contains(k, p) || strings.Contains(x, p) {
				return true
			}
		}
	case []string:
		for _, x := range v {
			if strings.Contains(x, p) {
				return true
			}
		}
	}
	return false
}

// strictFormat is the Format of the ValueError strict validation gives.
const strictFormat = "template that uses it in logic (rendered unencoded)"

// strictRoot validates every value under one network field of data.
// Values of other types than Data produces are left to the caller.
func strictRoot(name string, v any) error {
	switch name {
	case "Labels":
		m, _ := v.(map[string]string)
		for _, k := range slices.Sorted(maps.Keys(m)) {
			if err := strictValue("Labels."+k, k, m[k]); err != nil {
				return err
			}
		}
	case "request":
		req, _ := v.(map[string]any)
		q, _ := req["query"].(map[string]string)
		for _, k := range slices.Sorted(maps.Keys(q)) {
			if err := strictValue("request.query."+k, k, q[k]); err != nil {
				return err
			}
		}
		if s, ok := req["raw_query"].(string); ok {
			return strictValue("request.raw_query", "", s)
		}
	default:
		if s, ok := v.(string); ok {
			return strictValue(name, "", s)
		}
	}
	return nil
}

// strictValue validates a value for what its field claims it is: the
// canonical forms profile produces for MAC, UUID, hostname (RFC 1123) and
// IP address; for labels and query parameters a name of [A-Za-z0-9_.-]
// and a value of [A-Za-z0-9._:/@=+-] (no space, quote, comma, bracket or
// '#', so it cannot end a YAML scalar or a JSON string); for the raw query
// string the characters of such parameters plus '&' and '%', starting
// with a letter or digit. Empty values pass.
func strictValue(field, key, s string) error {
	bad := func(reason string) error {
		return &profile.ValueError{Field: field, Value: s, Format: strictFormat, Reason: reason}
	}
	if key != "" && !onlyChars(key, "_.-") {
		return &profile.ValueError{Field: field, Value: key, Format: strictFormat, Reason: "parameter name: want [A-Za-z0-9_.-]"}
	}
	if s == "" {
		return nil
	}
	switch field {
	case "MAC", "MACHyphen", "MACRaw":
		m, err := hwaddr.Parse(s)
		if err != nil || s != map[string]string{"MAC": m.String(), "MACHyphen": m.Hyphen(), "MACRaw": m.Raw()}[field] {
			return bad("not a MAC address in canonical form")
		}
	case "UUID":
		if _, u, err := profile.Normalize(profile.KeyUUID, s); err != nil || u != s || len(s) != 36 {
			return bad("not a UUID in canonical 8-4-4-4-12 form")
		}
	case "Hostname":
		if _, h, err := profile.Normalize(profile.KeyHostname, s); err != nil || h != s {
			return bad("not a lower-case RFC 1123 host name")
		}
	case "IP":
		if a, err := netip.ParseAddr(s); err != nil || a.Zone() != "" || a.String() != s {
			return bad("not an IP address in canonical form")
		}
	case "request.raw_query":
		if !onlyChars(s, "._:/@=+-&%~") || !isAlnum(s[0]) {
			return bad("want [A-Za-z0-9._:/@=+-&%~], starting with a letter or digit")
		}
	default:
		if !onlyChars(s, "._:/@=+-") {
			return bad("want [A-Za-z0-9._:/@=+-]")
		}
	}
	return nil
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func onlyChars(s, extra string) bool {
	for i := 0; i < len(s); i++ {
		if !isAlnum(s[i]) && strings.IndexByte(extra, s[i]) < 0 {
			return false
		}
	}
	return true
}

// plan is a converted config (JSON with placeholders) cut where
// placeholders are: JSON text kept as is, and the string values to rebuild
// per machine.
type plan struct {
	prefix string
	parts  []part
	// validate: a value lands outside data URL contents, where Ignition's
	// validation looks (paths, unit contents, URLs…), so the config must
	// be validated again once the values are in. Data URL contents are
	// re-encoded by MakeDataURL, which always yields a valid data URL, and
	// validation does not read what a data URL holds.
	validate bool
}

type part struct {
	text string // JSON copied as is, when slot is nil
	slot *slot
}

// slot is a JSON string value that holds placeholders.
type slot struct {
	key     string // key of the object member whose value this is; "" in arrays
	value   string // the decoded string (for a data URL: its contents)
	dataURL bool
	nested  *plan // data URL contents that are JSON (a merged config, a JSON file)
}

// errStructure is wrapped when a placeholder sits where no value from the
// network may go: an object key, a data URL's header or base64 payload.
var errStructure = errors.New("a value from the network in the config's structure")

// makePlan finds the placeholders in a validated, compact config. It
// returns nil when there are none.
func makePlan(raw []byte, prefix string) (*plan, error) {
	p := &plan{prefix: prefix}
	pre := []byte(prefix)
	start, lastKey := 0, ""
	for i := 0; i < len(raw); i++ {
		if raw[i] != '"' {
			continue
		}
		end := stringEnd(raw, i)
		if end < 0 {
			return nil, errors.New("ignition: unterminated JSON string")
		}
		lit := raw[i:end]
		isKey := end < len(raw) && nextNonSpace(raw, end) == ':'
		hasData := bytes.HasPrefix(lit, []byte(`"data:`))
		if !bytes.Contains(lit, pre) && !(hasData && !isKey) {
			if isKey {
				lastKey = unquote(lit)
			}
			i = end - 1
			continue
		}
		s := unquote(lit)
		if isKey {
			if strings.Contains(s, prefix) {
				return nil, fmt.Errorf("%w: object key %q", errStructure, s)
			}
			lastKey = s
			i = end - 1
			continue
		}
		key := ""
		if prevNonSpace(raw, i) == ':' {
			key = lastKey
		}
		sl := &slot{key: key, value: s}
		if hasData {
			if du, err := dataurl.DecodeString(s); err == nil {
				comma := strings.IndexByte(s, ',')
				if strings.Contains(s[:comma], prefix) {
					return nil, fmt.Errorf("%w: data URL header %q", errStructure, s[:comma])
				}
				if du.Encoding == dataurl.EncodingBase64 && strings.Contains(s[comma:], prefix) {
					return nil, fmt.Errorf("%w: inside a base64 data URL", errStructure)
				}
				if !bytes.Contains(du.Data, pre) {
					i = end - 1
					continue // a data URL without values
				}
				sl.value, sl.dataURL = string(du.Data), true
				if json.Valid(du.Data) {
					// A config to merge, or a JSON file: its values are
					// JSON-encoded like the outer config's.
					if sl.nested, err = makePlan(du.Data, prefix); err != nil {
						return nil, err
					}
				}
			}
		}
		if !sl.dataURL && !strings.Contains(s, prefix) {
			i = end - 1
			continue // a string that only looks like a data URL
		}
		p.validate = p.validate || !sl.dataURL
		p.parts = append(p.parts, part{text: string(raw[start:i])}, part{slot: sl})
		start = end
		i = end - 1
	}
	if len(p.parts) == 0 {
		return nil, nil
	}
	p.parts = append(p.parts, part{text: string(raw[start:])})
	return p, nil
}

// count returns how often tok occurs in the strings of the plan (data URL
// contents decoded).
func (p *plan) count(tok string) int {
	if p == nil {
		return 0
	}
	n := 0
	for _, pt := range p.parts {
		if pt.slot != nil {
			n += strings.Count(pt.slot.value, tok)
		}
	}
	return n
}

func stringEnd(b []byte, i int) int {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return -1
}

func nextNonSpace(b []byte, i int) byte {
	for ; i < len(b); i++ {
		if c := b[i]; c != ' ' && c != '\t' && c != '\n' && c != '\r' {
			return c
		}
	}
	return 0
}

func prevNonSpace(b []byte, i int) byte {
	for i--; i >= 0; i-- {
		if c := b[i]; c != ' ' && c != '\t' && c != '\n' && c != '\r' {
			return c
		}
	}
	return 0
}

func unquote(lit []byte) string {
	var s string
	_ = json.Unmarshal(lit, &s) // a string of a validated config
	return s
}

// nameKeys are the members whose value names a file, directory, device,
// unit or user: a value from the network there must be one name.
var nameKeys = map[string]bool{"path": true, "name": true, "device": true}

// apply rebuilds the config with the real values. In a data URL's
// contents a value is placed byte for byte, unless the contents are JSON
// (a config to merge, a JSON file), whose strings get the same treatment
// as the config's; in any other string it must
// be valid UTF-8 without control characters (a newline would start a new
// line of a unit file or of authorized_keys); in a path, name or device
// it must also be a single name (no '/', not "." or "..").
func (p *plan) apply(v *values) ([]byte, error) {
	var b bytes.Buffer
	for _, pt := range p.parts {
		if pt.slot == nil {
			b.WriteString(pt.text)
			continue
		}
		var s string
		var err error
		if pt.slot.nested != nil {
			var b []byte
			b, err = pt.slot.nested.apply(v)
			s = string(b)
		} else {
			s, err = p.fill(pt.slot, v)
		}
		if err != nil {
			return nil, err
		}
		if pt.slot.dataURL {
			if s, _, err = butaneutil.MakeDataURL([]byte(s), nil, false); err != nil {
				return nil, err
			}
		}
		enc, err := json.Marshal(s)
		if err != nil {
			return nil, err
		}
		b.Write(enc)
	}
	return b.Bytes(), nil
}

func (p *plan) fill(sl *slot, v *values) (string, error) {
	var b strings.Builder
	s := sl.value
	for {
		i := strings.Index(s, p.prefix)
		if i < 0 {
			b.WriteString(s)
			return b.String(), nil
		}
		rest := s[i+len(p.prefix):]
		j := strings.IndexByte(rest, 'Y')
		pl, ok := placed{}, false
		if j >= 0 {
			pl, ok = v.byID[rest[:j]]
		}
		if !ok {
			return "", fmt.Errorf("ignition: placeholder %q of another render", trunc(s[i:]))
		}
		if !sl.dataURL && !pl.trusted {
			if err := plainValue(sl.key, pl); err != nil {
				return "", err
			}
		}
		b.WriteString(s[:i])
		b.WriteString(pl.value)
		s = rest[j+1:]
	}
}

func plainValue(key string, pl placed) error {
	bad := func(reason string) error {
		format := "Ignition config string"
		if nameKeys[key] {
			format = "Ignition " + key
		}
		return &profile.ValueError{Field: pl.field, Value: pl.value, Format: format, Reason: reason}
	}
	if !utf8.ValidString(pl.value) {
		return bad("not valid UTF-8")
	}
	for _, c := range []byte(pl.value) {
		if c < 0x20 || c == 0x7f {
			return bad("control character")
		}
	}
	if nameKeys[key] && (strings.ContainsRune(pl.value, '/') || pl.value == "." || pl.value == "..") {
		return bad("a value from the network must be one name here ('/', \".\" and \"..\" would change which file it is)")
	}
	return nil
}

func trunc(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}
