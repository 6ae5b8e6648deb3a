package grubcfg

// Quote returns s as one GRUB script word that GRUB takes literally: no
// variable expansion, no command separator, no wildcard, whatever s holds.
// It is the only way values enter a configuration rendered by this package.
//
// The word is single-quoted; a single quote inside s becomes '\” (close
// the quote, an escaped quote, reopen), which GRUB's lexer accepts as it
// does in POSIX shells. Inside single quotes GRUB keeps every byte,
// including '$', ';', '&', '{', '}', '\', '#' and newlines (a newline makes
// a multi-line word, which GRUB reads on).
//
// Two bytes cannot be carried and are dropped: NUL, because GRUB reads
// scripts as C strings and would cut the line there (its quotes would then
// pair with the following lines, which is how an injection would start),
// and carriage return, which GRUB's line reader discards anyway. Unquote
// of the result therefore gives s without NUL and CR bytes.
func Quote(s string) string {
	if safeQuoted(s) {
		return "'" + s + "'"
	}
	return string(AppendQuote(make([]byte, 0, len(s)+8), s))
}

// AppendQuote appends Quote(s) to dst and returns the extended buffer; it
// does not allocate when dst has room.
func AppendQuote(dst []byte, s string) []byte {
	dst = append(dst, '\'')
	dst = appendEscaped(dst, s)
	return append(dst, '\'')
}

// appendQuoted appends the quoted concatenation of parts without building
// it first.
func appendQuoted(dst []byte, parts ...string) []byte {
	dst = append(dst, '\'')
	for _, p := range parts {
		dst = appendEscaped(dst, p)
	}
	return append(dst, '\'')
}

// appendEscaped appends s as the inside of a single-quoted GRUB word.
func appendEscaped(dst []byte, s string) []byte {
	start := 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\'', 0, '\r':
			dst = append(dst, s[start:i]...)
			if c == '\'' {
				dst = append(dst, `'\''`...)
			}
			start = i + 1
		}
	}
	return append(dst, s[start:]...)
}

func safeQuoted(s string) bool {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\'', 0, '\r':
			return false
		}
	}
	return true
}
