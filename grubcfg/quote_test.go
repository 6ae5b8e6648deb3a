package grubcfg

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// quoteSeeds are hostile values: command separators, substitutions,
// GRUB's special characters, quotes, NUL, unicode.
var quoteSeeds = []string{
	"", "plain", "a b", ";reboot", "x; reboot", "a&b", "a && reboot", "a || reboot",
	"$(reboot)", "`reboot`", "${net_default_mac}", "$net_default_mac", "$", "$?", "${",
	"a\nreboot", "a\n\nreboot\n", "\n", "'", "''", "'\\''", "a'b", "'; reboot; echo '",
	"\\", "\\\\", "a\\", "a\\\nreboot", "\\'", "{", "}", "{}", "} ; reboot ; {", "menuentry x { reboot }",
	"\x00", "a\x00'; reboot", "a\x00", "\r", "a\r\nreboot", "#comment", "a #b", "\"", "\"$x\"",
	"a|b", "a<b>c", "*", "?", "[", "\\x41", "grub\\?mac=", "héllo wörld", "日本語", "\xff\xfe",
	"coreos.config.url=http://deploy.lab:8080/ignition?uuid=&mac=00-23-32-2f-40-3c",
	"\t", "if", "fi", "then", "function", "}}}'{{{",
}

// stripUncarried is what Quote drops: NUL and CR.
func stripUncarried(s string) string {
	return strings.NewReplacer("\x00", "", "\r", "").Replace(s)
}

// checkQuoted asserts that "echo <Quote(x)> MARK" is exactly one command
// of three words whose second is x (per the lexer model), and, when bin is
// set, that GRUB's own parser accepts it, alone and inside a menu entry.
func checkQuoted(t *testing.T, bin, x string) {
	t.Helper()
	q := Quote(x)
	script := "echo " + q + " MARK\n"
	toks, err := lexGRUB(script)
	require.NoError(t, err, "lexing %q", script)
	cmds := commands(toks)
	want := stripUncarried(x)
	require.Len(t, cmds, 1, "one command expected in %q, got %q", script, cmds)
	require.Equal(t, []string{"echo", want, "MARK"}, cmds[0], "script %q", script)
	for _, tk := range toks {
		require.False(t, tk.vars, "a variable would be expanded in %q", script)
	}
	assert.Equal(t, []byte(q), AppendQuote(nil, x))
	if bin == "" {
		return
	}
	for _, s := range []string{
		script,
		"menuentry " + q + " --id x {\n  echo " + q + "\n  linux /k " + q + " " + q + "\n}\necho MARK\n",
	} {
		require.NoError(t, grubCheck(bin, s), "GRUB rejects quoted %q", x)
	}
}

func TestQuote(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", "''"},
		{"abc", "'abc'"},
		{"a'b", `'a'\''b'`},
		{"'", `''\'''`},
		{";reboot", "';reboot'"},
		{"$x", "'$x'"},
		{"a\x00b\rc", "'abc'"},
		{"a\nb", "'a\nb'"},
	} {
		assert.Equal(t, tc.want, Quote(tc.in), "Quote(%q)", tc.in)
	}
}

func TestQuoteGRUBAcceptsSeeds(t *testing.T) {
	bin := needScriptCheck(t)
	for _, s := range quoteSeeds {
		checkQuoted(t, bin, s)
	}
}

// TestOracleCatchesNaiveQuoting proves the checks above can fail: quoting
// by wrapping in single quotes without escaping lets a value add commands,
// and both the lexer model and GRUB see it.
func TestOracleCatchesNaiveQuoting(t *testing.T) {
	naive := func(s string) string { return "'" + s + "'" }
	x := "a'; reboot; echo '"
	script := "echo " + naive(x) + " MARK\n"
	toks, err := lexGRUB(script)
	require.NoError(t, err)
	assert.Len(t, commands(toks), 3, "the model sees the injected command")

	// matchbox's unquoted kernel line with '&': GRUB rejects it.
	bin := needScriptCheck(t)
	bad := "linux /k coreos.config.url=http://x/ignition?uuid=&mac=1\n"
	assert.Error(t, grubCheck(bin, bad), "grub-script-check must reject an unquoted &")
	// A NUL cut would leave an unterminated quote.
	assert.Error(t, grubCheck(bin, "echo 'a\n"), "unterminated quote")
	// And the model agrees with GRUB on a command injected with the naive quote.
	assert.NoError(t, grubCheck(bin, script), "GRUB parses the injection as valid commands")
}

func FuzzQuote(f *testing.F) {
	for _, s := range quoteSeeds {
		f.Add(s)
	}
	bin := scriptCheckPath()
	f.Fuzz(func(t *testing.T, x string) {
		if len(x) > 4096 {
			return
		}
		checkQuoted(t, bin, x)
		if utf8.ValidString(x) {
			assert.True(t, utf8.ValidString(Quote(x)))
		}
	})
}

func BenchmarkQuote(b *testing.B) {
	s := "coreos.config.url=http://deploy.lab:8080/ignition?uuid=&mac=00-23-32-2f-40-3c"
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendQuote(buf[:0], s)
	}
}
