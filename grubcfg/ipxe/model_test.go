package ipxe

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A model of how iPXE reads a script (src/image/script.c process_script,
// src/core/exec.c system, split_command, command_terminator,
// expand_tokens; src/core/settings.c expand_settings), the oracle of the
// tests besides iPXE itself under QEMU.

// ipxeCmd is one command iPXE runs (or skips) from a script line.
type ipxeCmd struct {
	Line  int    // 1-based line of the script where the command's line starts
	Label string // the line's label (":name"), on its first command
	// Raw are the words as split, Argv the words expanded.
	Raw, Argv []string
	// Next is the terminator after the command: "||", "&&", ";" or ""
	// (end of line, or a comment).
	Next string
}

// parseIPXE reads a script as iPXE does, expanding words with settings
// (an unknown or empty name expands to ""). It fails when the magic line
// is missing or an expansion does not end.
func parseIPXE(script string, settings map[string]string) ([]ipxeCmd, error) {
	if !strings.HasPrefix(script, "#!ipxe") || len(script) < 7 || !isSpace(script[6]) {
		return nil, errors.New("no #!ipxe magic")
	}
	var out []ipxeCmd
	data := script
	line, lineNo, next := "", 1, 1
	for off := 0; off < len(data); {
		end := strings.IndexByte(data[off:], '\n')
		var frag string
		if end < 0 {
			frag, off = data[off:], len(data)
		} else {
			frag, off = data[off:off+end], off+end+1
		}
		next++
		line += frag
		line = strings.TrimSuffix(line, "\r")
		if strings.HasSuffix(line, `\`) {
			line = line[:len(line)-1]
			continue
		}
		// Labels.
		cmd := strings.TrimLeftFunc(line, func(r rune) bool { return r < 0x80 && isSpace(byte(r)) })
		label := ""
		if strings.HasPrefix(cmd, ":") {
			cmd = cmd[1:]
			i := 0
			for i < len(cmd) && !isSpace(cmd[i]) {
				i++
			}
			label = cmd[:i]
			if i < len(cmd) {
				i++
			}
			cmd = cmd[i:]
		}
		// A NUL ends the C string.
		if i := strings.IndexByte(cmd, 0); i >= 0 {
			cmd = cmd[:i]
		}
		cmds, err := systemModel(cmd, settings)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", lineNo, err)
		}
		if len(cmds) == 0 && label != "" {
			cmds = []ipxeCmd{{}}
		}
		for i := range cmds {
			cmds[i].Line = lineNo
			if i == 0 {
				cmds[i].Label = label
			}
		}
		out = append(out, cmds...)
		line, lineNo = "", next
	}
	return out, nil
}

// systemModel splits one command line into commands.
func systemModel(line string, settings map[string]string) ([]ipxeCmd, error) {
	var tokens []string
	for i := 0; i < len(line); {
		for i < len(line) && isSpace(line[i]) {
			i++
		}
		if i == len(line) {
			break
		}
		j := i
		for j < len(line) && !isSpace(line[j]) {
			j++
		}
		tokens = append(tokens, line[i:j])
		i = j
	}
	var out []ipxeCmd
	for len(tokens) > 0 {
		n, next := 0, ""
		for ; n < len(tokens); n++ {
			t := tokens[n]
			if t[0] == '#' {
				break
			}
			if t == "||" || t == "&&" || t == ";" {
				next = t
				break
			}
		}
		c := ipxeCmd{Raw: tokens[:n], Next: next}
		for _, t := range c.Raw {
			x, err := expandModel(t, settings)
			if err != nil {
				return nil, err
			}
			c.Argv = append(c.Argv, x)
		}
		if n > 0 || next != "" {
			out = append(out, c)
		}
		if next == "" {
			break
		}
		tokens = tokens[n+1:]
	}
	return out, nil
}

// expandModel is expand_settings: the last "${" before the first '}'
// after it is replaced by the setting's value, until none is left.
func expandModel(s string, settings map[string]string) (string, error) {
	for n := 0; ; n++ {
		if n > 10000 {
			return "", errors.New("expansion does not end")
		}
		start, end := -1, -1
		for i := 0; i < len(s); i++ {
			if s[i] == '$' && i+1 < len(s) && s[i+1] == '{' {
				start = i
			}
			if start >= 0 && s[i] == '}' {
				end = i
				break
			}
		}
		if end < 0 {
			return s, nil
		}
		s = s[:start] + settings[s[start+2:end]] + s[end+1:]
	}
}

func TestIPXEModel(t *testing.T) {
	cmds, err := parseIPXE("#!ipxe\n  echo a  b || echo c\\\n d # x || y\n:lbl echo ${x}${}#\n:only\nexit 1\r\n#c\n", map[string]string{"x": "${y}", "y": "Y"})
	require.NoError(t, err)
	var got []string
	for _, c := range cmds {
		got = append(got, fmt.Sprintf("%d %s %q %s", c.Line, c.Label, c.Argv, c.Next))
	}
	assert.Equal(t, []string{
		`2  ["echo" "a" "b"] ||`,
		`2  ["echo" "c" "d"] `,
		`4 lbl ["echo" "Y#"] `,
		`5 only [] `,
		`6  ["exit" "1"] `,
	}, got)
	x, err := expandModel("a${b${c}d}e", map[string]string{"c": "C", "bCd": "!"})
	require.NoError(t, err)
	assert.Equal(t, "a!e", x)
	x, err = expandModel("${}#${", nil)
	require.NoError(t, err)
	assert.Equal(t, "#${", x)
}

// words returns the commands of a script without labels and empty
// commands, as "argv joined by ' ' [next]" strings, for assertions.
func words(t testing.TB, script string, settings map[string]string) []string {
	t.Helper()
	cmds, err := parseIPXE(script, settings)
	require.NoError(t, err, script)
	var out []string
	for _, c := range cmds {
		s := ""
		if c.Label != "" {
			s = ":" + c.Label + " "
		}
		s += fmt.Sprintf("%q", c.Argv)
		if c.Next != "" {
			s += " " + c.Next
		}
		out = append(out, s)
	}
	return out
}
