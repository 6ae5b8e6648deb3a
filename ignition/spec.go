package ignition

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	cjson "github.com/clarketm/json"
	ignerrors "github.com/coreos/ignition/v2/config/shared/errors"
	"github.com/coreos/ignition/v2/config/util"
	"github.com/coreos/ignition/v2/config/v3_0"
	"github.com/coreos/ignition/v2/config/v3_1"
	"github.com/coreos/ignition/v2/config/v3_2"
	"github.com/coreos/ignition/v2/config/v3_3"
	"github.com/coreos/ignition/v2/config/v3_4"
	"github.com/coreos/ignition/v2/config/v3_4/types"
	"github.com/coreos/ignition/v2/config/v3_5"
	exp "github.com/coreos/ignition/v2/config/v3_6_experimental"
	"github.com/coreos/vcontext/report"
)

// DefaultVersion is the Ignition spec version generated configs use unless
// the caller asks for another. 3.4.0 is the newest spec that both current
// Flatcar (Butane's newest stable flatcar variant, 1.1.0, emits 3.4.0) and
// Fedora CoreOS (which accepts up to 3.5.0) boot.
const DefaultVersion = "3.4.0"

// ExperimentalVersion is the experimental spec of the Ignition module in
// go.mod. Released Ignition builds may refuse it; generated configs never
// use it unless asked to.
const ExperimentalVersion = "3.6.0-experimental"

// Errors callers can test for with errors.Is.
var (
	// ErrInvalidConfig is wrapped by every error about a config Ignition's
	// validation rejects.
	ErrInvalidConfig = errors.New("invalid Ignition config")
	// ErrUnsupportedVersion is wrapped when a config declares, or a caller
	// asks for, a spec version this package cannot validate (2.x, 4.x …).
	ErrUnsupportedVersion = errors.New("unsupported Ignition spec version")
)

type parseFunc func([]byte) (report.Report, error)

func wrap[T any](f func([]byte) (T, report.Report, error)) parseFunc {
	return func(b []byte) (report.Report, error) {
		_, r, err := f(b)
		return r, err
	}
}

// parsers maps each spec version to the parser of exactly that version.
var parsers = map[string]parseFunc{
	"3.0.0":             wrap(v3_0.Parse),
	"3.1.0":             wrap(v3_1.Parse),
	"3.2.0":             wrap(v3_2.Parse),
	"3.3.0":             wrap(v3_3.Parse),
	"3.4.0":             wrap(v3_4.Parse),
	"3.5.0":             wrap(v3_5.Parse),
	ExperimentalVersion: wrap(exp.Parse),
}

// Versions lists the spec versions Validate and Marshal accept, oldest
// first (the experimental one last).
func Versions() []string {
	v := []string{"3.0.0", "3.1.0", "3.2.0", "3.3.0", "3.4.0", "3.5.0", ExperimentalVersion}
	return slices.Clone(v)
}

// Validate checks raw with Ignition's own parser for the spec version raw
// declares (not translated to another version) and returns that version
// and the report (warnings included). An error wraps ErrInvalidConfig or
// ErrUnsupportedVersion and carries the report's fatal entries with their
// line and column in raw.
func Validate(raw []byte) (string, report.Report, error) {
	ver, rpt, err := util.GetConfigVersion(raw)
	if err != nil {
		if errors.Is(err, ignerrors.ErrInvalidVersion) || errors.Is(err, ignerrors.ErrUnknownVersion) {
			return "", rpt, fmt.Errorf("%w: %v", ErrUnsupportedVersion, err)
		}
		return "", rpt, fmt.Errorf("%w: %s", ErrInvalidConfig, describeReport(err, rpt))
	}
	v := ver.String()
	parse, ok := parsers[v]
	if !ok {
		return v, rpt, fmt.Errorf("%w: %q (want one of %s)", ErrUnsupportedVersion, v, strings.Join(Versions(), ", "))
	}
	rpt, err = parse(raw)
	if err != nil || rpt.IsFatal() {
		if err == nil {
			err = ignerrors.ErrInvalid
		}
		return v, rpt, fmt.Errorf("%w (spec %s): %s", ErrInvalidConfig, v, describeReport(err, rpt))
	}
	return v, rpt, nil
}

// describeReport renders the fatal entries of a report (or, without any,
// the error) on one line.
func describeReport(err error, rpt report.Report) string {
	var parts []string
	for _, e := range rpt.Entries {
		if e.Kind.IsFatal() {
			parts = append(parts, strings.TrimSpace(e.String()))
		}
	}
	if len(parts) == 0 {
		return err.Error()
	}
	return strings.Join(parts, "; ")
}

// Marshal encodes cfg (built with the 3.4 types, whatever its
// Ignition.Version says) as a config of spec version (DefaultVersion when
// empty) and validates the result with that version's parser. A config
// that uses a field the chosen version does not have is an error, not a
// silently ignored key.
func Marshal(cfg types.Config, version string) ([]byte, error) {
	if version == "" {
		version = DefaultVersion
	}
	if _, ok := parsers[version]; !ok {
		return nil, fmt.Errorf("%w: %q (want one of %s)", ErrUnsupportedVersion, version, strings.Join(Versions(), ", "))
	}
	cfg.Ignition.Version = version
	// clarketm/json omits empty structs, as Butane's output does, so the
	// result carries only keys every 3.x version knows unless cfg uses them.
	raw, err := cjson.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("ignition: marshal: %w", err)
	}
	_, rpt, err := Validate(raw)
	if err != nil {
		return nil, err
	}
	var unused []string
	for _, e := range rpt.Entries {
		if strings.Contains(e.Message, "unused key") {
			unused = append(unused, strings.TrimSpace(e.String()))
		}
	}
	if len(unused) > 0 {
		return nil, fmt.Errorf("%w: spec %s lacks fields the config uses: %s", ErrInvalidConfig, version, strings.Join(unused, "; "))
	}
	return raw, nil
}

// compactJSON returns raw without insignificant white space, or raw itself
// when it is not valid JSON (validation reports that separately).
func compactJSON(raw []byte) []byte {
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return raw
	}
	return b.Bytes()
}
