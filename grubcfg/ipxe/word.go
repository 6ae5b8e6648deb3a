package ipxe

import (
	"errors"
	"fmt"
	"strings"
)

// ErrUnencodable is wrapped by Word and Literal errors: a string iPXE's
// script syntax cannot carry as one word.
var ErrUnencodable = errors.New("cannot be written as one iPXE word")

// empty is an expansion of nothing: "${}" names no setting, which iPXE
// expands to the empty string.
const empty = "${}"

// isSpace is C's isspace, with which iPXE splits lines into words.
func isSpace(c byte) bool {
	switch c {
	case ' ', '\t', '\n', '\v', '\f', '\r':
		return true
	}
	return false
}

// Word returns s written as one word of an iPXE command line: iPXE's line
// reader and splitter give the command exactly one argument, s, which
// iPXE then expands as it expands every word (a "${name}" in s becomes
// the setting's value). The empty string, a word starting with '#'
// (which would comment out the rest of the line), the words "||", "&&"
// and ";" (which would chain a command) get the empty expansion "${}" in
// front; a word ending in '\' (which would continue the line) gets it
// behind. s must not contain white space or NUL (iPXE would split the
// word, or end the line there): the error wraps ErrUnencodable.
func Word(s string) (string, error) {
	b, err := AppendWord(nil, s)
	return string(b), err
}

// AppendWord appends Word(s) to dst; on error dst is returned unchanged.
func AppendWord(dst []byte, s string) ([]byte, error) {
	if err := checkWord(s); err != nil {
		return dst, err
	}
	if s == "" || s[0] == '#' || s == "||" || s == "&&" || s == ";" {
		dst = append(dst, empty...)
	}
	dst = append(dst, s...)
	if strings.HasSuffix(s, `\`) {
		dst = append(dst, empty...)
	}
	return dst, nil
}

// checkWord returns Word's error for s, if any.
func checkWord(s string) error {
	for i := 0; i < len(s); i++ {
		if isSpace(s[i]) || s[i] == 0 {
			return fmt.Errorf("%w: %.60q holds %q", ErrUnencodable, s, s[i])
		}
	}
	return nil
}

// Expands reports whether iPXE would expand something in s: a "${" with
// a '}' after it.
func Expands(s string) bool {
	i := strings.Index(s, "${")
	return i >= 0 && strings.IndexByte(s[i+2:], '}') >= 0
}

// Literal is Word for a string iPXE must take as written, not expand:
// the error wraps ErrUnencodable when s holds "${" with a '}' after it,
// which iPXE would expand (it has no escape for that), or cannot be one
// word.
func Literal(s string) (string, error) {
	if Expands(s) {
		return "", fmt.Errorf("%w: %.60q: iPXE would expand its ${…} and has no escape for it", ErrUnencodable, s)
	}
	return Word(s)
}

// appendText appends s as the words of a message (an echo): split at
// white space, with "${" broken up ("$ {") and control bytes replaced by
// '?', so that iPXE prints the text as it reads, words joined by single
// spaces.
func appendText(dst []byte, s string) []byte {
	if strings.Contains(s, "${") {
		s = strings.ReplaceAll(s, "${", "$ {")
	}
	first := true
	for i := 0; i < len(s); {
		for i < len(s) && isSpace(s[i]) {
			i++
		}
		j := i
		for j < len(s) && !isSpace(s[j]) {
			j++
		}
		if j == i {
			break
		}
		w := s[i:j]
		i = j
		if !first {
			dst = append(dst, ' ')
		}
		first = false
		if w[0] == '#' || w == "||" || w == "&&" || w == ";" {
			dst = append(dst, empty...)
		}
		for k := 0; k < len(w); k++ {
			if c := w[k]; c < 0x20 || c == 0x7f {
				dst = append(dst, '?')
			} else {
				dst = append(dst, c)
			}
		}
		if w[len(w)-1] == '\\' {
			dst = append(dst, empty...)
		}
	}
	return dst
}
