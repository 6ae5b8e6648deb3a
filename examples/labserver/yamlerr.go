package main

import (
	"fmt"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// yamlErrors rewrites the decoder's messages ("field htpp not found in type
// main.Config", "cannot unmarshal !!seq into main.DNSConfig") into the
// operator's terms: the line, the dotted key as written in the file, what
// it wants, and for an unknown key the nearest known one. No Go type name
// reaches the operator.
func yamlErrors(root *yaml.Node, msg string) string {
	var out []string
	for _, m := range strings.Split(msg, "\n") {
		m = strings.TrimSpace(m)
		if m == "" {
			continue
		}
		out = append(out, yamlError(root, m))
	}
	return strings.Join(out, "; ")
}

var (
	unknownField = regexp.MustCompile(`^line (\d+): field (\S+) not found in type (\S+)$`)
	badType      = regexp.MustCompile("^line (\\d+): cannot unmarshal !!(\\w+)(?: `(.*)`)? into (\\S+)$")
)

func yamlError(root *yaml.Node, m string) string {
	if g := unknownField.FindStringSubmatch(m); g != nil {
		line, _ := strconv.Atoi(g[1])
		path := keyAt(root, line)
		section := "at the top level"
		if i := strings.LastIndex(path, "."); i >= 0 {
			section = "under " + path[:i]
		}
		s := fmt.Sprintf("line %d: unknown key %q %s", line, g[2], section)
		if near := nearest(g[2], knownKeys(g[3])); near != "" {
			s += fmt.Sprintf(" (did you mean %q?)", near)
		}
		return s
	}
	if g := badType.FindStringSubmatch(m); g != nil {
		line, _ := strconv.Atoi(g[1])
		got := map[string]string{"seq": "a list", "map": "a mapping", "str": "a string", "int": "a number",
			"float": "a number", "bool": "true/false", "null": "nothing"}[g[2]]
		if got == "" {
			got = g[2]
		}
		if g[3] != "" {
			got += " (" + g[3] + ")"
		}
		want := map[string]string{"[]string": "a list of strings", "string": "a string", "bool": "true or false",
			"int": "a number", "map[string]string": "a mapping of names to values"}[g[4]]
		if want == "" && strings.HasPrefix(g[4], "[]") {
			want = "a list"
		}
		if want == "" {
			want = "a mapping of keys"
		}
		key := keyAt(root, line)
		if key == "" {
			return fmt.Sprintf("line %d: want %s, found %s", line, want, got)
		}
		return fmt.Sprintf("line %d: %s: want %s, found %s", line, key, want, got)
	}
	return strings.ReplaceAll(m, "main.", "")
}

// keyAt returns the dotted path of the key whose key or value starts on
// line ("dhcp.range"), or "".
func keyAt(root *yaml.Node, line int) string {
	if root == nil || len(root.Content) == 0 {
		return ""
	}
	var walk func(n *yaml.Node, prefix string) string
	walk = func(n *yaml.Node, prefix string) string {
		switch n.Kind {
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				path := k.Value
				if prefix != "" {
					path = prefix + "." + k.Value
				}
				if k.Line == line || (v.Line == line && v.Kind != yaml.MappingNode) {
					return path
				}
				if p := walk(v, path); p != "" {
					return p
				}
			}
		case yaml.SequenceNode:
			for _, c := range n.Content {
				if p := walk(c, prefix); p != "" {
					return p
				}
			}
		}
		return ""
	}
	return walk(root.Content[0], "")
}

// knownKeys lists the YAML keys of the config type the decoder named
// ("main.DNSConfig").
func knownKeys(goType string) []string {
	types := map[string]reflect.Type{
		"main.Config": reflect.TypeFor[Config](), "main.DNSConfig": reflect.TypeFor[DNSConfig](),
		"main.DHCP": reflect.TypeFor[DHCP](), "main.Reservation": reflect.TypeFor[Reservation](),
	}
	t, ok := types[goType]
	if !ok {
		return nil
	}
	var keys []string
	for f := range t.Fields() {
		if k, _, _ := strings.Cut(f.Tag.Get("yaml"), ","); k != "" && k != "-" {
			keys = append(keys, k)
		}
	}
	return keys
}

// nearest returns the key within edit distance 2 of s, or "".
func nearest(s string, keys []string) string {
	best, bestD := "", 3
	for _, k := range keys {
		if d := editDistance(s, k); d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			// a swap of two neighbours counts once ("htpp" for "http")
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev[j-1]) // approximate transposition
			}
		}
		prev = cur
	}
	return prev[len(b)]
}
