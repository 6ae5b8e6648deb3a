package ignition

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"text/template/parse"

	butane "github.com/coreos/butane/config"
	"github.com/coreos/butane/config/common"
	"github.com/coreos/vcontext/report"

	"github.com/metalboot/metalboot/dhcpsrv/hwaddr"
	"github.com/metalboot/metalboot/internal/par"
	"github.com/metalboot/metalboot/profile"
)

// ErrTemplate is wrapped by every *TemplateError.
var ErrTemplate = errors.New("ignition template")

// ErrMissingParam is wrapped when a template reads a request query
// parameter ({{.request.query.name}}) that the request did not carry: the
// request is incomplete, not the template broken (HTTP 400).
var ErrMissingParam = errors.New("missing query parameter")

// Stages a template goes through; TemplateError.Stage names the one that
// failed.
const (
	StageParse     = "parse"     // text/template syntax
	StageExecute   = "execute"   // text/template execution (missing keys …)
	StageTranslate = "translate" // Butane YAML to Ignition
	StageValidate  = "validate"  // Ignition's validation
)

// TemplateError is a template that did not parse, execute, translate or
// validate. Error gives the detail for logs; Short gives a reason fit for
// an HTTP client (no values, no config text).
type TemplateError struct {
	// File is the template's path in the data directory, "ignition/<name>".
	File string
	// Line is the line of the template (parse, execute) or of the rendered
	// text (translate, validate: the same line unless a value spans
	// lines); 0 when unknown.
	Line int
	// Stage is one of the Stage constants.
	Stage string
	// Text is the offending line of the rendered text, when known.
	Text string
	// Err is the underlying error.
	Err error
}

// Error gives file, line, stage, detail and the offending rendered line.
func (e *TemplateError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, " line %d", e.Line)
	}
	fmt.Fprintf(&b, ": %s: %v", e.Stage, e.Err)
	if e.Text != "" {
		fmt.Fprintf(&b, " (at %q)", e.Text)
	}
	return b.String()
}

// Short is a one-line reason without values from the config.
func (e *TemplateError) Short() string {
	if errors.Is(e.Err, ErrMissingParam) {
		return e.File + ": " + e.Err.Error()
	}
	s := e.File
	if e.Line > 0 {
		s += " line " + strconv.Itoa(e.Line)
	}
	return s + ": " + e.Stage + " failed (details in the server log)"
}

// Unwrap returns both ErrTemplate and the underlying error.
func (e *TemplateError) Unwrap() []error { return []error{ErrTemplate, e.Err} }

// Template is one compiled file of a data directory's ignition/ folder: a
// text/template (missingkey=error) whose output is Butane YAML or Ignition
// JSON (output starting with '{').
type Template struct {
	// Name is the file name under ignition/.
	Name string

	file    string // "ignition/<name>" or "generic/<name>", for errors
	tmpl    *template.Template
	query   []string // keys of .request.query the template reads
	needMAC bool     // reads .MAC, .MACHyphen or .MACRaw
	size    int      // source length, to size the output buffer
	src     string   // the source, where placeholders must not occur
	logic   rootSet  // network fields used in logic: rendered real
	meta    []string // top-level metadata names only printed whole (see "Metadata")
	uses    []profile.LogicUse
}

// Compile parses src, the content of ignition/<name>.
func Compile(name string, src []byte) (*Template, error) {
	return compileFile("ignition/"+name, name, src)
}

// compileFile parses src, the content of file (ignition/<name> or
// generic/<name>).
func compileFile(file, name string, src []byte) (*Template, error) {
	t, err := template.New(file).Option("missingkey=error").Parse(string(src))
	if err != nil {
		return nil, tmplError(file, StageParse, err, nil)
	}
	tp := &Template{Name: name, file: file, tmpl: t, size: len(src), src: string(src)}
	tp.uses = profile.FindLogicUses(t, netLeaf)
	for _, u := range tp.uses {
		if u.Root == "" {
			tp.logic = allRoots
		}
		tp.logic |= rootBit(u.Root)
	}
	seen := map[string]bool{}
	for _, tr := range t.Templates() {
		if tr.Tree != nil {
			walk(tr.Tree.Root, func(ident []string) {
				if len(ident) >= 1 && (ident[0] == "MAC" || ident[0] == "MACHyphen" || ident[0] == "MACRaw") {
					tp.needMAC = true
				}
				if len(ident) >= 3 && ident[0] == "request" && ident[1] == "query" && !seen[ident[2]] {
					seen[ident[2]] = true
					tp.query = append(tp.query, ident[2])
				}
			})
		}
	}
	slices.Sort(tp.query)
	tp.meta = printedOnly(t)
	return tp, nil
}

// fixedNames are the fields of Data that are not metadata.
var fixedNames = map[string]bool{
	"MAC": true, "MACHyphen": true, "MACRaw": true, "UUID": true, "Hostname": true, "IP": true,
	"Labels": true, "request": true, "BaseURL": true, "Metadata": true, "Group": true, "Profile": true,
}

// printedOnly lists the top-level metadata names t reads only by printing
// them whole ({{.hostname}}, {{$.hostname}}), never in logic: those can be
// rendered as placeholders (see "Metadata" in encode.go).
func printedOnly(t *template.Template) []string {
	leaf := func(field []string) (string, bool) {
		if fixedNames[field[0]] {
			return "", false
		}
		return field[0], len(field) == 1
	}
	inLogic := map[string]bool{}
	for _, u := range profile.FindLogicUses(t, leaf) {
		if u.Root == "" {
			return nil // the dot itself is used: any field may be reached
		}
		inLogic[u.Root] = true
	}
	seen := map[string]bool{}
	var names []string
	for _, tr := range t.Templates() {
		if tr.Tree == nil {
			continue
		}
		walk(tr.Tree.Root, func(ident []string) {
			if len(ident) == 1 && !fixedNames[ident[0]] && !inLogic[ident[0]] && !seen[ident[0]] {
				seen[ident[0]] = true
				names = append(names, ident[0])
			}
		})
	}
	slices.Sort(names)
	return names
}

// QueryParams lists the request query parameters the template reads as
// {{.request.query.name}}.
func (t *Template) QueryParams() []string { return slices.Clone(t.query) }

// walk calls f with the field chain of every field reference in the tree:
// ".request.query.mac" and "$.request.query.mac" give
// ["request" "query" "mac"].
func walk(n parse.Node, f func([]string)) {
	switch n := n.(type) {
	case *parse.ListNode:
		if n != nil {
			for _, c := range n.Nodes {
				walk(c, f)
			}
		}
	case *parse.ActionNode:
		walk(n.Pipe, f)
	case *parse.PipeNode:
		if n != nil {
			for _, c := range n.Cmds {
				walk(c, f)
			}
		}
	case *parse.CommandNode:
		for _, a := range n.Args {
			walk(a, f)
		}
	case *parse.FieldNode:
		f(n.Ident)
	case *parse.VariableNode:
		if len(n.Ident) > 1 && n.Ident[0] == "$" {
			f(n.Ident[1:])
		}
	case *parse.ChainNode:
		walk(n.Node, f)
	case *parse.IfNode:
		walkBranch(&n.BranchNode, f)
	case *parse.RangeNode:
		walkBranch(&n.BranchNode, f)
	case *parse.WithNode:
		walkBranch(&n.BranchNode, f)
	case *parse.TemplateNode:
		walk(n.Pipe, f)
	}
}

func walkBranch(b *parse.BranchNode, f func([]string)) {
	walk(b.Pipe, f)
	walk(b.List, f)
	walk(b.ElseList, f)
}

// Execute renders the template against data (see Data) and returns the
// text: Butane YAML or Ignition JSON, with the real values in it. A query
// parameter the template reads but data's request lacks, or an empty MAC
// in a template that uses {{.MAC}}, {{.MACHyphen}} or {{.MACRaw}}, is an
// error wrapping ErrMissingParam: a config for "no machine" is never
// rendered.
//
// Text cannot keep a value from the network from changing its structure,
// so Execute first validates every such value in data strictly for its
// kind (canonical MAC, UUID, IP address; RFC 1123 hostname; labels and
// query parameters of [A-Za-z0-9._:/@=+-]); one that fails is a
// *profile.ValueError. Render does not need that: it encodes the values.
func (t *Template) Execute(data map[string]any) ([]byte, error) {
	for _, name := range netRoots {
		if err := strictRoot(name, data[name]); err != nil {
			return nil, err
		}
	}
	return t.execute(data)
}

// execute runs the template on data as it is.
func (t *Template) execute(data map[string]any) ([]byte, error) {
	file := t.file
	if mac, _ := data["MAC"].(string); t.needMAC && mac == "" {
		return nil, &TemplateError{File: file, Stage: StageExecute,
			Err: fmt.Errorf("%w %q (the template uses the machine's MAC)", ErrMissingParam, profile.KeyMAC)}
	}
	if len(t.query) > 0 {
		q, _ := data["request"].(map[string]any)
		query, _ := q["query"].(map[string]string)
		for _, k := range t.query {
			if _, ok := query[k]; !ok {
				return nil, &TemplateError{File: file, Stage: StageExecute,
					Err: fmt.Errorf("%w %q (the template reads {{.request.query.%s}})", ErrMissingParam, k, k)}
			}
		}
	}
	var b bytes.Buffer
	b.Grow(t.size + t.size/2)
	if err := t.tmpl.Execute(&b, data); err != nil {
		return nil, tmplError(file, StageExecute, err, nil)
	}
	return b.Bytes(), nil
}

// Render executes the template against data, converts the text (see
// Convert) and returns the config. Values from the network in data (the
// fields MAC, MACHyphen, MACRaw, UUID, Hostname, IP, Labels and request
// that Data fills) are encoded by the renderer: the template runs with
// placeholders, and each value takes its placeholder's place in the
// Ignition JSON, inside a string (file contents: inside the data URL), so
// no value can add or change a file, unit, user or any other part of the
// config, whatever it holds. In a path, name or device a value must be one
// name (no '/'); outside file contents it must be valid UTF-8 without
// control characters; a value that is not is a *profile.ValueError. A
// field the template uses in logic (see profile.FindLogicUses) gets its
// real value after the strict validation Execute applies. Errors are
// *TemplateError, *profile.ValueError or wrap ErrMissingParam.
func (t *Template) Render(data map[string]any) (Output, error) {
	out, _, err := t.render(data, nil)
	return out, err
}

// convCache holds converted configs by their text with placeholders.
type convCache interface {
	cached(key string) (cacheEntry, bool)
	store(key string, e cacheEntry)
}

// mapCache is an unbounded convCache for one pass over an inventory.
type mapCache map[string]cacheEntry

func (c mapCache) cached(key string) (cacheEntry, bool) { e, ok := c[key]; return e, ok }
func (c mapCache) store(key string, e cacheEntry)       { c[key] = e }

// render is Render through the cache c (nil: none). fresh reports that the
// text was translated by this call (its warnings are new).
func (t *Template) render(data map[string]any, c convCache) (out Output, fresh bool, err error) {
	out, fresh, err = t.renderMode(data, c, true)
	if errors.Is(err, errMetaFallback) {
		return t.renderMode(data, c, false)
	}
	if metaCheck != nil {
		metaCheck(t, data, out, err)
	}
	return out, fresh, err
}

// metaCheck, set by the package's tests, sees every render that used
// metadata placeholders, to compare it with a render with the real values.
var metaCheck func(t *Template, data map[string]any, out Output, err error)

// renderMode renders with placeholders for the values from the network,
// and with meta for the metadata the template only prints (an error
// wrapping errMetaFallback when those cannot stand for the values).
func (t *Template) renderMode(data map[string]any, c convCache, meta bool) (Output, bool, error) {
	pd, vals, err := t.placeholders(data, meta)
	if err != nil {
		return Output{}, false, err
	}
	text, err := t.execute(pd)
	if err != nil {
		return Output{}, false, err
	}
	trusted := vals.hasTrusted()
	var e cacheEntry
	ok, fresh := false, false
	if c != nil {
		e, ok = c.cached(string(text))
	}
	if !ok {
		e, err = t.convert(text, vals)
		switch {
		case err != nil && !trusted:
			return Output{}, false, err
		case err != nil:
			e = cacheEntry{fallback: true}
		default:
			fresh = true
		}
		if c != nil {
			c.store(string(text), e)
		}
	}
	if e.fallback {
		return Output{}, false, errMetaFallback
	}
	out, err := t.fill(e.out, e.plan, vals)
	if err != nil && trusted {
		// Let the real values speak: the error, or the config, is theirs.
		return Output{}, false, errMetaFallback
	}
	return out, fresh, err
}

// convert translates text with placeholders and finds them in the result.
// With metadata placeholders, an error wraps errMetaFallback unless every
// one came through intact.
func (t *Template) convert(text []byte, vals *values) (cacheEntry, error) {
	out, err := Convert(t.Name, text)
	if err != nil {
		if vals.hasTrusted() {
			return cacheEntry{}, fmt.Errorf("%w: %w", errMetaFallback, err)
		}
		return cacheEntry{}, vals.explain(err)
	}
	pl, err := t.plan(out, vals)
	if err == nil && vals.hasTrusted() && !vals.intact(text, pl) {
		err = errors.New("a placeholder changed or vanished")
	}
	if err != nil && vals.hasTrusted() {
		return cacheEntry{}, fmt.Errorf("%w: %w", errMetaFallback, err)
	}
	if err != nil {
		return cacheEntry{}, err
	}
	return cacheEntry{out: out, plan: pl}, nil
}

// plan finds the placeholders in a converted config.
func (t *Template) plan(out Output, vals *values) (*plan, error) {
	if vals == nil || len(vals.byID) == 0 {
		return nil, nil
	}
	pl, err := makePlan(out.JSON, vals.prefix)
	if err != nil {
		return nil, &TemplateError{File: "ignition/" + t.Name, Stage: StageValidate, Err: err}
	}
	return pl, nil
}

// fill puts the values into a converted config and validates the result.
func (t *Template) fill(out Output, pl *plan, vals *values) (Output, error) {
	if pl == nil {
		return out, nil
	}
	raw, err := pl.apply(vals)
	if err != nil {
		return Output{}, err
	}
	if !pl.validate {
		out.JSON = raw
		return out, nil
	}
	if _, _, err := Validate(raw); err != nil {
		// The same config with placeholders validated: the values broke it.
		return Output{}, &TemplateError{File: "ignition/" + t.Name, Stage: StageValidate,
			Err: fmt.Errorf("%w: the config does not validate with them: %w", profile.ErrBadValue, err)}
	}
	out.JSON = raw
	return out, nil
}

// explain rewrites the offending text of a TemplateError from a render
// with placeholders so that it names the fields ({{.Hostname}}) instead.
func (v *values) explain(err error) error {
	var te *TemplateError
	if v != nil && errors.As(err, &te) && te.Text != "" {
		te.Text = v.describe(te.Text)
	}
	return err
}

// Output is a config ready to serve.
type Output struct {
	// JSON is the validated Ignition config, compact.
	JSON []byte
	// Version is its spec version, as Butane emitted it or the JSON
	// declares it.
	Version string
	// Warnings are the non-fatal findings of Butane and Ignition.
	Warnings []string
}

var translateOptions = common.TranslateBytesOptions{
	// Keep file contents readable in the served config (and in logs and
	// serial consoles); Ignition accepts both forms.
	TranslateOptions: common.TranslateOptions{NoResourceAutoCompression: true},
	// For the openshift variant, the Ignition config rather than a
	// MachineConfig wrapper.
	Raw: true,
}

// Convert turns the rendered text of ignition/<name> into a config to
// serve. Text starting with '{' is Ignition JSON, validated as the version
// it declares, unless it is a JSON object with a "variant" key; anything
// else is Butane YAML, translated with the variant
// and version its header names (no local files: files_dir is unset) and
// validated as the version Butane emitted. Errors are *TemplateError.
func Convert(name string, text []byte) (Output, error) {
	file := "ignition/" + name
	var out Output
	raw := text
	isJSON := false
	if isIgnitionJSON(text) {
		isJSON = true
	} else {
		ign, rpt, err := butane.TranslateBytes(text, translateOptions)
		if err == nil && rpt.IsFatal() {
			err = errors.New("fatal report")
		}
		if err != nil {
			return Output{}, tmplError(file, StageTranslate, reportError(err, rpt), text, rpt)
		}
		out.Warnings = append(out.Warnings, entries(rpt, false)...)
		raw = ign
	}
	ver, rpt, err := Validate(raw)
	if err != nil {
		e := tmplError(file, StageValidate, err, nil)
		if isJSON {
			// The report's lines are the rendered JSON's; for Butane output
			// they would point into the translation, not the template.
			addLine(e, raw, rpt)
		}
		return Output{}, e
	}
	out.Warnings = append(out.Warnings, entries(rpt, false)...)
	if strings.Contains(ver, "experimental") {
		out.Warnings = append(out.Warnings, "spec "+ver+" is experimental: released Ignition may refuse it")
	}
	out.JSON = compactJSON(raw)
	out.Version = ver
	return out, nil
}

// entries renders report entries, fatal or not.
func entries(rpt report.Report, fatal bool) []string {
	var out []string
	for _, e := range rpt.Entries {
		if e.Kind.IsFatal() == fatal {
			out = append(out, strings.TrimSpace(e.String()))
		}
	}
	return out
}

// isIgnitionJSON tells Ignition JSON (starts with '{' and is not a Butane
// config written as JSON, which has a top-level "variant") from Butane.
func isIgnitionJSON(text []byte) bool {
	trimmed := bytes.TrimLeft(text, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return false
	}
	var top map[string]json.RawMessage
	if json.Unmarshal(trimmed, &top) == nil {
		_, butane := top["variant"]
		return !butane
	}
	return true // broken JSON: report it as JSON
}

func reportError(err error, rpt report.Report) error {
	if f := entries(rpt, true); len(f) > 0 {
		return fmt.Errorf("%v: %s", err, strings.Join(f, "; "))
	}
	return err
}

var (
	tmplPos   = regexp.MustCompile(`^template: (.*?):(\d+):(?:\d+:)? ?`)
	yamlPos   = regexp.MustCompile(`line (\d+)`)
	startedAt = regexp.MustCompile(`started at (.*?):(\d+)`)
)

// tmplError builds a TemplateError, finding the line in text/template's
// message, the report's markers or a YAML error message; text is the
// rendered text when the line refers to it.
func tmplError(file, stage string, err error, text []byte, rpts ...report.Report) *TemplateError {
	e := &TemplateError{File: file, Stage: stage, Err: err}
	msg := err.Error()
	if m := tmplPos.FindStringSubmatch(msg); m != nil && m[1] == file {
		e.Line, _ = strconv.Atoi(m[2])
		e.Err = errors.New(strings.TrimSpace(msg[len(m[0]):]))
		if s := startedAt.FindStringSubmatch(msg); s != nil && s[1] == file {
			e.Line, _ = strconv.Atoi(s[2]) // "unclosed action started at FILE:N"
		}
		if errors.Is(err, ErrMissingParam) {
			e.Err = err
		}
		return e
	}
	for _, r := range rpts {
		addLine(e, text, r)
	}
	if e.Line == 0 && text != nil {
		if m := yamlPos.FindStringSubmatch(msg); m != nil {
			e.Line, _ = strconv.Atoi(m[1])
			e.Text = lineOf(text, e.Line)
		}
	}
	return e
}

func addLine(e *TemplateError, text []byte, rpt report.Report) {
	if e.Line > 0 {
		return
	}
	for _, en := range rpt.Entries {
		if en.Kind.IsFatal() && en.Marker.StartP != nil && en.Marker.StartP.Line > 0 {
			e.Line = int(en.Marker.StartP.Line)
			e.Text = lineOf(text, e.Line)
			return
		}
	}
}

func lineOf(text []byte, n int) string {
	if n <= 0 {
		return ""
	}
	lines := bytes.Split(text, []byte("\n"))
	if n > len(lines) {
		return ""
	}
	s := strings.TrimSpace(string(lines[n-1]))
	if len(s) > 120 {
		s = s[:120] + "…"
	}
	return s
}

// Data returns what ignition/ templates render against, as matchbox
// v0.11 does: the group's metadata keys and then its selector's keys at the
// top level ({{.ssh_authorized_key}}, {{.mac}}),
// "request" with "query" (the request's query parameters, first value
// each, MAC and UUID in canonical form: {{.request.query.mac}}; an empty
// mac= is absent, an empty uuid= is "") and
// "raw_query" (as received), plus the profile package's fields MAC,
// MACHyphen, MACRaw, UUID, Hostname, IP, BaseURL, Metadata, Labels, Group
// and Profile, which win over metadata keys of the same name.
func Data(m *profile.Machine) map[string]any {
	td := m.Data()
	data := make(map[string]any, len(td.Metadata)+12)
	maps.Copy(data, td.Metadata)
	if m.Group != nil {
		for k, v := range m.Group.Selector {
			data[k] = v // matchbox: selector values at the top level too
		}
	}
	query := map[string]string{}
	if q, err := url.ParseQuery(m.RawQuery); err == nil {
		for k, vs := range q {
			// The MAC only as validated: an empty or unparsable mac= is
			// absent, so a template that needs it fails with
			// ErrMissingParam instead of writing "mac=" into a config.
			if len(vs) > 0 && !strings.EqualFold(k, profile.KeyMAC) {
				query[k] = vs[0]
			}
		}
	}
	maps.Copy(query, m.Attrs)
	labels := td.Labels
	if labels == nil {
		labels = map[string]string{}
	}
	data["request"] = map[string]any{"query": query, "raw_query": m.RawQuery}
	data["MAC"] = td.MAC
	data["MACHyphen"] = td.MACHyphen
	data["MACRaw"] = td.MACRaw
	data["UUID"] = td.UUID
	data["Hostname"] = td.Hostname
	data["IP"] = td.IP
	data["BaseURL"] = td.BaseURL
	data["Metadata"] = td.Metadata
	data["Labels"] = labels
	data["Group"] = td.Group
	data["Profile"] = td.Profile
	return data
}

// compiledSet holds the compiled templates of one inventory.
type compiledSet struct {
	inv  *profile.Inventory
	tmpl map[string]*Template
	errs map[string]error
}

// compileInventory compiles every template a profile references.
func compileInventory(inv *profile.Inventory) *compiledSet {
	s := &compiledSet{inv: inv, tmpl: map[string]*Template{}, errs: map[string]error{}}
	for _, p := range inv.Profiles() {
		name := p.IgnitionID
		if name == "" || s.tmpl[name] != nil || s.errs[name] != nil {
			continue
		}
		src, ok := inv.Template(name)
		if !ok {
			s.errs[name] = &TemplateError{File: "ignition/" + name, Stage: StageParse, Err: errors.New("no such file")}
			continue
		}
		t, err := Compile(name, src)
		if err != nil {
			s.errs[name] = err
			continue
		}
		s.tmpl[name] = t
	}
	return s
}

// Sample placeholders used when test-rendering a template for a group.
const (
	SampleBaseURL = "http://metalboot.invalid"
	SampleUUID    = "00000000-0000-4000-8000-000000000000"
	SampleValue   = "sample"
)

// SampleMAC is the MAC of the sample machine of a group whose selector
// names none.
var SampleMAC = hwaddr.MAC{0x02, 0, 0, 0, 0, 0x01}

// sampleMachine is a machine group g could match: its selector's MAC and
// UUID or placeholders, its metadata's hostname and ip, and a placeholder
// for every other query parameter t reads.
func sampleMachine(g *profile.Group, p *profile.Profile, t *Template) *profile.Machine {
	attrs := maps.Clone(g.Selector)
	if attrs == nil {
		attrs = map[string]string{}
	}
	m := &profile.Machine{MAC: SampleMAC, UUID: SampleUUID, Hostname: SampleValue, BaseURL: SampleBaseURL, Group: g, Profile: p}
	if s, ok := attrs[profile.KeyMAC]; ok {
		if mac, err := hwaddr.Parse(s); err == nil {
			m.MAC = mac
		}
	}
	attrs[profile.KeyMAC] = m.MAC.String()
	if s, ok := attrs[profile.KeyUUID]; ok {
		m.UUID = s
	}
	attrs[profile.KeyUUID] = m.UUID
	if s, ok := g.Metadata["hostname"].(string); ok {
		m.Hostname = s
	}
	if s, ok := attrs[profile.KeyHostname]; ok {
		m.Hostname = s
	}
	if t != nil {
		for _, k := range t.query {
			if _, ok := attrs[k]; !ok {
				attrs[k] = SampleValue
			}
		}
	}
	m.Attrs = attrs
	q := url.Values{}
	for k, v := range attrs {
		q.Set(k, v)
	}
	m.RawQuery = q.Encode()
	return m
}

// Check compiles every template a profile of inv references and, for each
// group using such a profile, renders it against a sample machine of the
// group (its selector's MAC, UUID and attributes or placeholders, its
// metadata), translates and validates the result; generic templates
// (generic_id) are compiled and rendered too (CheckGeneric). Every
// problem is reported, each naming the group, profile and template file
// and line.
// Pass it as profile.FSStore.Check so a broken template fails the load,
// not a machine's boot.
func Check(inv *profile.Inventory) error {
	_, _, err := check(inv)
	return err
}

// check returns the compiled set and the warnings of every render.
func check(inv *profile.Inventory) (*compiledSet, []string, error) {
	s := compileInventory(inv)
	var errs []error
	var warns []string
	for _, name := range slices.Sorted(maps.Keys(s.errs)) {
		errs = append(errs, s.errs[name])
	}
	for _, name := range slices.Sorted(maps.Keys(s.tmpl)) {
		for _, u := range s.tmpl[name].uses {
			what := "every value from the network (through the dot)"
			if u.Root != "" {
				what = "{{." + u.Root + "}}"
			}
			warns = append(warns, fmt.Sprintf("%s: uses %s in logic (%s): rendered with the real values after strict validation, not encoded", u.Where, what, u.What))
		}
	}
	// Every group is rendered for its sample machine, in parallel: groups
	// whose text with placeholders is the same share one translation per
	// worker, so an inventory of one group per machine costs a template
	// execution and a fill per machine, not a Butane translation.
	groups := inv.Groups()
	type result struct {
		err   error
		warns []string
	}
	res := make([]result, len(groups))
	one := func(i int, cache mapCache) {
		g := groups[i]
		p, ok := inv.Profile(g.Profile)
		if !ok || p.IgnitionID == "" {
			return
		}
		t := s.tmpl[p.IgnitionID]
		if t == nil {
			return // reported above
		}
		out, fresh, err := t.render(Data(sampleMachine(g, p, t)), cache)
		if err != nil {
			res[i].err = fmt.Errorf("group %q (%s), profile %q: %w", g.ID, orGo(g.Source), p.ID, err)
			return
		}
		if fresh {
			for _, w := range out.Warnings {
				res[i].warns = append(res[i].warns, fmt.Sprintf("ignition/%s: %s", t.Name, w))
			}
		}
	}
	// A translation cache per goroutine: no lock on the hot path.
	par.DoWith(len(groups), 256, func() mapCache { return mapCache{} }, one)
	// A translation's warnings once, for the first group that has it.
	seen := map[string]bool{}
	for i, r := range res {
		if r.err != nil {
			errs = append(errs, r.err)
		}
		for _, w := range r.warns {
			if !seen[w] {
				seen[w] = true
				g := groups[i]
				warns = append(warns, fmt.Sprintf("group %q, profile %q, %s", g.ID, g.Profile, w))
			}
		}
	}
	if _, err := checkGeneric(inv); err != nil {
		errs = append(errs, err)
	}
	return s, warns, errors.Join(errs...)
}

func orGo(src string) string {
	if src == "" {
		return "built in Go"
	}
	return src
}
