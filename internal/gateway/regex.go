package gateway

import (
	"clb/internal/model"
	"fmt"
	"regexp"
	"regexp/syntax"
	"strconv"
	"strings"
	"unicode/utf8"
)

// MaxRegexLen bounds every user regular expression (path_regex, user_agent, header
// patterns, Eru patterns), in bytes.
const MaxRegexLen = 512

// ErrInvalid is wrapped by every validation error of a gateway, domain, route or Eru rule
// set (callers answer it with 400). It is model.ErrInvalid, so that code mapping model
// errors to 400 needs nothing new.
var ErrInvalid = model.ErrInvalid

// userRegex is a user pattern that passed the safety checks: parsed with Go's
// regexp/syntax (Perl flags), compiled for the Go model, and re-emitted for haproxy's PCRE2.
type userRegex struct {
	src  string
	tree *syntax.Regexp
	re   *regexp.Regexp
	caps int
}

// parseRegex checks a user pattern: ASCII printable, at most MaxRegexLen bytes, Go
// regexp/syntax with Perl flags (so no backreferences and no lookaround: both would mean
// different things, or nothing, in RE2 and PCRE2), and no unbounded repeat nested in another
// (`(a+)+`): PCRE2 backtracks, and such patterns take exponential time on a crafted subject.
func parseRegex(p string) (*userRegex, error) {
	if p == "" {
		return nil, fmt.Errorf("%w: empty regular expression", ErrInvalid)
	}
	if len(p) > MaxRegexLen {
		return nil, fmt.Errorf("%w: regular expression of %d bytes: at most %d", ErrInvalid, len(p), MaxRegexLen)
	}
	for i := 0; i < len(p); i++ {
		if p[i] < 0x20 || p[i] > 0x7e {
			return nil, fmt.Errorf("%w: regular expression %q: only printable ASCII is accepted (byte %d is %#x)", ErrInvalid, clip(p), i, p[i])
		}
	}
	for _, la := range []string{"(?=", "(?!", "(?<=", "(?<!"} {
		if strings.Contains(p, la) {
			return nil, fmt.Errorf("%w: regular expression %q: lookaround %s...) is not supported", ErrInvalid, clip(p), la)
		}
	}
	for i := 0; i+1 < len(p); i++ {
		if p[i] == '\\' {
			if p[i+1] >= '1' && p[i+1] <= '9' {
				return nil, fmt.Errorf("%w: regular expression %q: backreference \\%c is not supported (for a character code, write \\x..)", ErrInvalid, clip(p), p[i+1])
			}
			i++ // skip the escaped byte (`\\1` is a backslash then 1)
		}
	}
	tree, err := syntax.Parse(p, syntax.Perl)
	if err != nil {
		return nil, fmt.Errorf("%w: regular expression %q: %v", ErrInvalid, clip(p), err)
	}
	if nested := nestedRepeat(tree, false); nested != "" {
		return nil, fmt.Errorf("%w: regular expression %q: unbounded repeat %s inside another unbounded repeat (catastrophic backtracking in haproxy's PCRE2); make the inner or outer repeat bounded", ErrInvalid, clip(p), nested)
	}
	re, err := regexp.Compile(p)
	if err != nil {
		return nil, fmt.Errorf("%w: regular expression %q: %v", ErrInvalid, clip(p), err)
	}
	return &userRegex{src: p, tree: tree, re: re, caps: tree.MaxCap()}, nil
}

func unbounded(re *syntax.Regexp) bool {
	switch re.Op {
	case syntax.OpStar, syntax.OpPlus:
		return true
	case syntax.OpRepeat:
		return re.Max == -1
	}
	return false
}

// nestedRepeat returns the first unbounded repeat found inside an unbounded repeat ("" if none).
func nestedRepeat(re *syntax.Regexp, inside bool) string {
	if unbounded(re) {
		if inside {
			return "`" + re.String() + "`"
		}
		inside = true
	}
	for _, s := range re.Sub {
		if n := nestedRepeat(s, inside); n != "" {
			return n
		}
	}
	return ""
}

// pcre re-emits a parsed pattern for haproxy's PCRE2 so that it means the same as in Go and
// never reaches past its field of the subject (fields are separated by "\n", which no request
// field can contain): `.` and every class lose "\n", ^ and $ become line anchors (the keys run
// in (?m) mode, so they stand for the field's start and end), and only ASCII is written
// (haproxy's PCRE2 runs without UTF). With keepCaps false, groups become non-capturing, so
// that only the consuming rewrite pattern of an entry numbers groups (\1 is its first group).
func pcre(re *syntax.Regexp, keepCaps bool) string {
	var b strings.Builder
	emit(&b, re, keepCaps)
	return b.String()
}

func emit(b *strings.Builder, re *syntax.Regexp, keepCaps bool) {
	switch re.Op {
	case syntax.OpNoMatch:
		b.WriteString("(?!)")
	case syntax.OpEmptyMatch:
		b.WriteString("(?:)")
	case syntax.OpLiteral:
		fold := re.Flags&syntax.FoldCase != 0
		if fold {
			b.WriteString("(?i:")
		}
		for _, r := range re.Rune {
			literal(b, r)
		}
		if fold {
			b.WriteByte(')')
		}
	case syntax.OpCharClass:
		class(b, re.Rune)
	case syntax.OpAnyCharNotNL, syntax.OpAnyChar:
		b.WriteString(`[^\n]`)
	case syntax.OpBeginLine, syntax.OpBeginText:
		b.WriteString("^")
	case syntax.OpEndLine, syntax.OpEndText:
		b.WriteString("$")
	case syntax.OpWordBoundary:
		b.WriteString(`\b`)
	case syntax.OpNoWordBoundary:
		b.WriteString(`\B`)
	case syntax.OpCapture:
		if keepCaps {
			b.WriteByte('(')
		} else {
			b.WriteString("(?:")
		}
		emit(b, re.Sub[0], keepCaps)
		b.WriteByte(')')
	case syntax.OpStar, syntax.OpPlus, syntax.OpQuest, syntax.OpRepeat:
		if atom(re.Sub[0]) {
			emit(b, re.Sub[0], keepCaps)
		} else {
			b.WriteString("(?:")
			emit(b, re.Sub[0], keepCaps)
			b.WriteByte(')')
		}
		switch re.Op {
		case syntax.OpStar:
			b.WriteByte('*')
		case syntax.OpPlus:
			b.WriteByte('+')
		case syntax.OpQuest:
			b.WriteByte('?')
		default:
			b.WriteByte('{')
			b.WriteString(strconv.Itoa(re.Min))
			if re.Max != re.Min {
				b.WriteByte(',')
				if re.Max >= 0 {
					b.WriteString(strconv.Itoa(re.Max))
				}
			}
			b.WriteByte('}')
		}
		if re.Flags&syntax.NonGreedy != 0 {
			b.WriteByte('?')
		}
	case syntax.OpConcat:
		b.WriteString("(?:")
		for _, s := range re.Sub {
			emit(b, s, keepCaps)
		}
		b.WriteByte(')')
	case syntax.OpAlternate:
		b.WriteString("(?:")
		for i, s := range re.Sub {
			if i > 0 {
				b.WriteByte('|')
			}
			emit(b, s, keepCaps)
		}
		b.WriteByte(')')
	default:
		// Every op regexp/syntax produces is handled above; an unknown one matches nothing
		// rather than something unintended.
		b.WriteString("(?!)")
	}
}

// atom reports whether re is emitted as one PCRE atom (a repeat applies to all of it).
func atom(re *syntax.Regexp) bool {
	switch re.Op {
	case syntax.OpCharClass, syntax.OpAnyChar, syntax.OpAnyCharNotNL, syntax.OpCapture:
		return true
	case syntax.OpLiteral:
		return len(re.Rune) == 1 && re.Flags&syntax.FoldCase == 0
	}
	return false
}

// literal writes one rune as PCRE text: letters and digits as they are, everything else
// escaped (\xHH for ASCII, which also keeps spaces out of map keys; non-ASCII cannot occur in
// an accepted pattern except through case folding, which PCRE2 does itself).
func literal(b *strings.Builder, r rune) {
	switch {
	case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_', r == '/':
		b.WriteRune(r)
	case r > ' ' && r < 0x7f:
		b.WriteByte('\\') // an escaped non-alphanumeric is always literal in PCRE
		b.WriteRune(r)
	case r < utf8.RuneSelf:
		fmt.Fprintf(b, `\x%02x`, r) // spaces too: a space would end the map key
	default:
		// A rune past ASCII in a literal matches no subject byte in PCRE2 without UTF.
		b.WriteString("(?!)")
	}
}

func classChar(b *strings.Builder, r rune) {
	switch {
	case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_', r == '/':
		b.WriteRune(r)
	case r > ' ' && r < 0x7f:
		b.WriteByte('\\')
		b.WriteRune(r)
	default:
		fmt.Fprintf(b, `\x%02x`, r)
	}
}

// class writes a character class (ranges as regexp/syntax keeps them: sorted pairs) without
// "\n". A class that reaches the last rune is written negated (its complement is ASCII for
// every accepted pattern), so that it also matches the bytes past ASCII it matches in Go; any
// other class is clipped to ASCII.
func class(b *strings.Builder, ranges []rune) {
	var rs [][2]rune
	for i := 0; i+1 < len(ranges); i += 2 {
		lo, hi := ranges[i], ranges[i+1]
		if lo <= '\n' && '\n' <= hi {
			if lo < '\n' {
				rs = append(rs, [2]rune{lo, '\n' - 1})
			}
			if hi > '\n' {
				rs = append(rs, [2]rune{'\n' + 1, hi})
			}
			continue
		}
		rs = append(rs, [2]rune{lo, hi})
	}
	if len(rs) > 0 && rs[len(rs)-1][1] == utf8.MaxRune {
		// Complement within [0, MaxRune]; "\n" is in it by construction.
		var comp [][2]rune
		next := rune(0)
		for _, r := range rs {
			if r[0] > next {
				comp = append(comp, [2]rune{next, r[0] - 1})
			}
			next = r[1] + 1
		}
		b.WriteString("[^")
		for _, r := range comp {
			if r[0] >= utf8.RuneSelf {
				break
			}
			hi := min(r[1], utf8.RuneSelf-1)
			classRange(b, r[0], hi)
		}
		b.WriteByte(']')
		return
	}
	var ascii [][2]rune
	for _, r := range rs {
		if r[0] >= utf8.RuneSelf {
			break
		}
		ascii = append(ascii, [2]rune{r[0], min(r[1], utf8.RuneSelf-1)})
	}
	if len(ascii) == 0 {
		b.WriteString("(?!)")
		return
	}
	b.WriteByte('[')
	for _, r := range ascii {
		classRange(b, r[0], r[1])
	}
	b.WriteByte(']')
}

func classRange(b *strings.Builder, lo, hi rune) {
	classChar(b, lo)
	if hi > lo {
		if hi > lo+1 {
			b.WriteByte('-')
		}
		classChar(b, hi)
	}
}

// escapeLiteral writes s as a PCRE literal (field-safe, no spaces).
func escapeLiteral(s string) string {
	var b strings.Builder
	for _, r := range s {
		literal(&b, r)
	}
	return b.String()
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:77] + "..."
	}
	return s
}
