package ignition

import (
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"

	"github.com/metalboot/metalboot/profile"
)

// MatchboxData returns the variables matchbox v0.11 renders its configs
// and /metadata with (its collectVariables): the group's metadata, then
// its selector's keys (lower-cased) at the top level, and "request" with
// "query" (the request's parameters: metalboot's normalised attributes,
// keys lower-cased, MAC in canonical form, plus parameters given empty,
// such as "uuid=", as "") and "raw_query" (as received). Data is the
// superset Ignition and generic templates get.
func MatchboxData(m *profile.Machine) map[string]any {
	data := map[string]any{}
	if m.Group != nil {
		maps.Copy(data, m.Group.Metadata)
		for k, v := range m.Group.Selector {
			data[strings.ToLower(k)] = v
		}
	}
	query := map[string]string{}
	if q, err := url.ParseQuery(m.RawQuery); err == nil {
		for k := range q {
			query[strings.ToLower(k)] = "" // given, but empty unless an attribute
		}
	}
	maps.Copy(query, m.Attrs)
	data["request"] = map[string]any{"query": query, "raw_query": m.RawQuery}
	return data
}

// AppendEnv appends data as matchbox's /metadata "env file": one
// KEY=value line per string, number or boolean, KEY the upper-cased
// path of keys joined with '_' ({"outer":{"inner":"v"}} gives
// OUTER_INNER=v), nested objects descended, lists and nulls left out
// (as matchbox does), lines sorted by key (matchbox's order is random).
//
// Values are written for the two ways such a file is read, a shell's
// "." and systemd's EnvironmentFile=: a value of letters, digits and
// ._:/@=+,%- is written as is (so matchbox's output is unchanged for
// such values), any other value (white space, quotes, '&', '$',
// newlines…) between single quotes, a single quote as '\”, which both
// read back as the value. A key that is not letters, digits, '_', '.'
// and '-' is left out and reported in the returned list: it could not be
// one word of the file.
func AppendEnv(dst []byte, data map[string]any) ([]byte, []string) {
	type kv struct{ k, v string }
	var lines []kv
	var skipped []string
	var walk func(prefix string, m map[string]any)
	walk = func(prefix string, m map[string]any) {
		for k, v := range m {
			name := prefix + k
			switch v := v.(type) {
			case map[string]any:
				walk(name+"_", v)
				continue
			case map[string]string:
				mm := make(map[string]any, len(v))
				for k, x := range v {
					mm[k] = x
				}
				walk(name+"_", mm)
				continue
			case string, bool, float64, float32, int, int64, int32, uint, uint64, uint32:
			default:
				continue // lists, null: as matchbox
			}
			if !envKey(name) {
				skipped = append(skipped, name)
				continue
			}
			lines = append(lines, kv{strings.ToUpper(name), fmt.Sprint(v)})
		}
	}
	walk("", data)
	slices.SortFunc(lines, func(a, b kv) int { return strings.Compare(a.k+"="+a.v, b.k+"="+b.v) })
	for _, l := range lines {
		dst = append(dst, l.k...)
		dst = append(dst, '=')
		dst = appendEnvValue(dst, l.v)
		dst = append(dst, '\n')
	}
	slices.Sort(skipped)
	return dst, skipped
}

func envKey(s string) bool {
	return s != "" && onlyChars(s, "_.-")
}

func appendEnvValue(dst []byte, v string) []byte {
	if onlyChars(v, "._:/@=+,%-") {
		return append(dst, v...)
	}
	dst = append(dst, '\'')
	dst = append(dst, strings.ReplaceAll(v, "'", `'\''`)...)
	return append(dst, '\'')
}

// MetadataHandler serves GET /metadata?mac=…&<labels>: matchbox's
// metadata of the group the query resolves to, AppendEnv(MatchboxData),
// as text/plain:
//
//	GET /metadata?mac=52-54-00-a1-9c-ae&foo=bar
//	ETCD_NAME=node1
//	MAC=52:54:00:a1:9c:ae
//	REQUEST_QUERY_FOO=bar
//	REQUEST_QUERY_MAC=52:54:00:a1:9c:ae
//	REQUEST_RAW_QUERY='mac=52-54-00-a1-9c-ae&foo=bar'
//
// Answers: 200; 400 for a malformed query; 403 when Guard refuses; 404
// when no group matches; 405 for other methods than GET and HEAD.
//
// MetadataHandler is safe for concurrent use; its fields must not change
// once it serves.
type MetadataHandler struct {
	// Resolver resolves the query to a machine. When nil, requests must
	// already carry a machine in their context (profile.NewContext).
	Resolver *profile.Resolver
	// Guard, when set, restricts each machine's metadata to the addresses
	// it allows, as Handler.Guard does (metadata may hold secrets).
	Guard Guard
	// OnServe, when set, is called after metadata was sent in answer to
	// a GET.
	OnServe func(r *http.Request, m *profile.Machine)
	// Logger receives keys left out and refusals; nil discards.
	Logger *slog.Logger

	once sync.Once
	next http.Handler
}

// ServeHTTP implements http.Handler.
func (h *MetadataHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.once.Do(func() {
		h.next = http.HandlerFunc(h.serve)
		if h.Resolver != nil {
			h.next = h.Resolver.Middleware(h.next)
		}
	})
	h.next.ServeHTTP(w, r)
}

func (h *MetadataHandler) serve(w http.ResponseWriter, r *http.Request) {
	m, ok := serveable(w, r, h.Guard, h.Logger)
	if !ok {
		return
	}
	out, skipped := AppendEnv(nil, MatchboxData(m))
	if len(skipped) > 0 {
		group := ""
		if m.Group != nil {
			group = m.Group.ID
		}
		logger(h.Logger).Warn("metadata: keys left out (not letters, digits, '_', '.', '-')", "group", group, "keys", skipped)
	}
	writeText(w, r, out)
	if r.Method == http.MethodGet && h.OnServe != nil {
		h.OnServe(r, m)
	}
}
