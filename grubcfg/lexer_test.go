package grubcfg

import (
	"errors"
	"fmt"
	"strings"
)

// This file models the part of GRUB 2.06's script lexer
// (grub-core/script/yylex.l) and argument processing (script/execute.c)
// that decides where a word starts and ends and what value it has. Tests
// use it as an oracle next to grub-script-check: grub-script-check tells
// whether real GRUB accepts a script, the model tells how many words and
// commands it holds and what each word means.

type tokKind int

const (
	tWord tokKind = iota
	tNewline
	tOp // ; & | < > && || ;;
	tLBrace
	tRBrace
)

type token struct {
	kind tokKind
	text string // value of a word after quote removal; operator text
	vars bool   // the word expands a variable
}

func (t token) String() string {
	switch t.kind {
	case tWord:
		return fmt.Sprintf("W(%q)", t.text)
	case tNewline:
		return "NL"
	default:
		return fmt.Sprintf("OP(%s)", t.text)
	}
}

var errUnterminated = errors.New("unterminated quote")

// isCHAR is yylex.l's CHAR: [^{}|&$;<> \t\n\'\"\\]
func isCHAR(c byte) bool {
	return !strings.ContainsRune("{}|&$;<> \t\n'\"\\", rune(c))
}

func isNameStart(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

func isNameChar(c byte) bool { return isNameStart(c) || c >= '0' && c <= '9' }

// lexGRUB splits a script into tokens the way GRUB's lexer does. It does
// not model GRUB's line reader (callers give it a script without NUL and CR,
// as Quote produces) nor reserved words.
func lexGRUB(s string) ([]token, error) {
	var out []token
	i := 0
	for i < len(s) {
		c := s[i]
		switch {
		case c == ' ' || c == '\t':
			i++
		case c == '#':
			for i < len(s) && s[i] != '\n' {
				i++
			}
		case c == '\n':
			out = append(out, token{kind: tNewline})
			i++
		case c == '{':
			out = append(out, token{kind: tLBrace, text: "{"})
			i++
		case c == '}':
			out = append(out, token{kind: tRBrace, text: "}"})
			i++
		case c == ';' || c == '&' || c == '|' || c == '<' || c == '>':
			op := s[i : i+1]
			if i+1 < len(s) && (c == ';' || c == '&' || c == '|') && s[i+1] == c {
				op = s[i : i+2]
			}
			out = append(out, token{kind: tOp, text: op})
			i += len(op)
		default:
			w, n, err := lexWord(s[i:])
			if err != nil {
				return out, err
			}
			if n == 0 {
				return out, fmt.Errorf("bad character %q at %d", c, i)
			}
			out = append(out, w)
			i += n
		}
	}
	return out, nil
}

// lexWord reads one WORD: (CHAR|DQSTR|SQSTR|ESC|VARIABLE)+.
func lexWord(s string) (token, int, error) {
	var b strings.Builder
	t := token{kind: tWord}
	i := 0
	for i < len(s) {
		c := s[i]
		switch {
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return t, 0, errUnterminated
			}
			b.WriteString(s[i+1 : i+1+j])
			i += j + 2
		case c == '"':
			i++
			closed := false
			for i < len(s) && !closed {
				switch d := s[i]; {
				case d == '"':
					closed = true
					i++
				case d == '\\' && i+1 < len(s) && strings.IndexByte("$\\\"", s[i+1]) >= 0:
					b.WriteByte(s[i+1])
					i += 2
				case d == '\\' && i+1 < len(s) && s[i+1] == '\n':
					i += 2
				case d == '$':
					n := varLen(s[i:])
					if n == 0 {
						b.WriteByte('$')
						i++
					} else {
						t.vars = true
						b.WriteString("<VAR" + s[i:i+n] + ">")
						i += n
					}
				default:
					b.WriteByte(d)
					i++
				}
			}
			if !closed {
				return t, 0, errUnterminated
			}
		case c == '\\':
			if i+1 >= len(s) {
				return t, 0, errUnterminated // GRUB reads on
			}
			if s[i+1] != '\n' {
				b.WriteByte(s[i+1])
			}
			i += 2
		case c == '$':
			n := varLen(s[i:])
			if n == 0 {
				return t, 0, fmt.Errorf("bad variable at %q", s[i:])
			}
			t.vars = true
			b.WriteString("<VAR" + s[i:i+n] + ">")
			i += n
		case isCHAR(c):
			b.WriteByte(c)
			i++
		default:
			t.text = b.String()
			return t, i, nil
		}
	}
	t.text = b.String()
	return t, i, nil
}

// varLen is the length of a VARIABLE at the start of s ("$name", "${name}",
// "$1", "$?" …), or 0.
func varLen(s string) int {
	if len(s) < 2 || s[0] != '$' {
		return 0
	}
	body := s[1:]
	brace := body[0] == '{'
	if brace {
		body = body[1:]
	}
	n := 0
	switch {
	case len(body) > 0 && strings.IndexByte("?#*@", body[0]) >= 0:
		n = 1
	case len(body) > 0 && body[0] >= '0' && body[0] <= '9':
		for n < len(body) && body[n] >= '0' && body[n] <= '9' {
			n++
		}
	case len(body) > 0 && isNameStart(body[0]):
		for n < len(body) && isNameChar(body[n]) {
			n++
		}
	}
	if n == 0 {
		return 0
	}
	if brace {
		if n >= len(body) || body[n] != '}' {
			return 0
		}
		return n + 3
	}
	return n + 1
}

// commands splits tokens into simple commands (word lists) at newlines and
// operators; braces end a command too.
func commands(toks []token) [][]string {
	var out [][]string
	var cur []string
	flush := func() {
		if len(cur) > 0 {
			out = append(out, cur)
			cur = nil
		}
	}
	for _, t := range toks {
		if t.kind == tWord {
			cur = append(cur, t.text)
			continue
		}
		flush()
	}
	flush()
	return out
}
