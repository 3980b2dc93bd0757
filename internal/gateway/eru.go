package gateway

import (
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
)

// EruTargets answers the haproxy backend of an Eru backend rule's servername (an Eru
// upstream). Errors are reported wrapped in ErrUnknownService.
type EruTargets interface {
	Upstream(servername string) (backend string, err error)
}

// EruByService maps an Eru upstream to the clb service of the same name, lower-cased (Eru
// names such as "app___web___pod" are valid clb service names once lower-cased), through its
// only http listener. Literal "host:port" servernames, which Eru's nginx accepts, are refused:
// clb routes to services.
func EruByService(t Targets) EruTargets { return eruByService{t} }

type eruByService struct{ t Targets }

func (e eruByService) Upstream(name string) (string, error) {
	if strings.Contains(name, ":") {
		return "", fmt.Errorf("%w: servername %q: a literal host:port is not supported; name a clb service", ErrInvalid, clip(name))
	}
	return backend(e.t, strings.ToLower(name), 0)
}

// eruDeadEnd is Eru elb's answer when the branch a test needs is absent.
const eruDeadEnd = 403

var eruNameRe = regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,64}$`)

type eruRule struct {
	name       string
	typ        string
	pattern    string
	regex      bool
	rewrite    bool
	re         *userRegex
	succ, fail string
	backend    string
}

// CompileEru validates an Eru elb rule graph and compiles it to a decision list, with Eru's
// semantics fixed where Eru is broken (see the package README section "Eru rule sets"):
//
//   - `ua` searches its pattern (unanchored) in the lower-cased User-Agent; a request without
//     one fails the test.
//   - `path` without regex is a string prefix test; with regex, an unanchored search that
//     fails when it does not match (Eru's always succeeds since 2018); with regex and rewrite,
//     the path becomes the first group with a leading "/" (Eru drops the "/"), or "/" when the
//     pattern has no group; rewrite without regex is ignored, as in Eru.
//   - a missing succ/fail branch answers 403, as in Eru.
//
// Refused, each with an error naming the rules: a missing or unknown init, a succ/fail that
// names no rule, a loop (the cycle in the message), an unknown type, unknown args, a backend
// without servername or with other args (Eru turns them into request headers), a servername
// EruTargets does not know (ErrUnknownService), a path test after a rewriting rule (its
// subject would be the rewritten path), rules unreachable from init, more than MaxEruDepth
// tests on a path, more than MaxEntriesPerDomain entries, and unsafe regexes.
//
// The decision list has one entry per root-to-leaf path: a test's succ entries carry the test
// as a condition and come first; its fail entries follow without it, so they only see
// requests that failed it (negation by order, first match wins).
func CompileEru(host string, r EruRules, t EruTargets) ([]Entry, error) {
	fail := func(format string, a ...any) error {
		return fmt.Errorf("domain %s: eru rules: %w: "+format, append([]any{host, ErrInvalid}, a...)...)
	}
	if r.Init == "" {
		return nil, fail("init is missing")
	}
	if len(r.Rules) == 0 {
		return nil, fail("rules are missing")
	}
	names := make([]string, 0, len(r.Rules))
	for n := range r.Rules {
		names = append(names, n)
	}
	sort.Strings(names)
	rules := map[string]*eruRule{}
	for _, n := range names {
		if !eruNameRe.MatchString(n) {
			return nil, fail("rule name %q: want 1-64 of A-Z a-z 0-9 _ . : -", clip(n))
		}
		rule, err := parseEruRule(n, r.Rules[n], t)
		if err != nil {
			if errors.Is(err, ErrUnknownService) {
				return nil, fmt.Errorf("domain %s: eru rules: rule %q: %w", host, n, err)
			}
			return nil, fail("rule %q: %v", n, err)
		}
		rules[n] = rule
	}
	if _, ok := rules[r.Init]; !ok {
		return nil, fail("init rule %q does not exist", clip(r.Init))
	}

	var out []Entry
	reached := map[string]bool{}
	var walk func(name string, conds []Cond, rw *EntryRewrite, stack []string) error
	walk = func(name string, conds []Cond, rw *EntryRewrite, stack []string) error {
		rule, ok := rules[name]
		if !ok {
			return fail("rule %q: points to missing rule %q", stack[len(stack)-1], clip(name))
		}
		for i, s := range stack {
			if s == name {
				return fail("loop: %s", strings.Join(append(stack[i:], name), " -> "))
			}
		}
		reached[name] = true
		stack = append(stack[:len(stack):len(stack)], name)
		emit := func(e Entry) error {
			if len(out) == MaxEntriesPerDomain {
				return fail("more than %d decision-list entries (one per path from init to a backend or dead end)", MaxEntriesPerDomain)
			}
			out = append(out, e)
			return nil
		}
		if rule.typ == "backend" {
			return emit(Entry{Source: strings.Join(stack, ">"), Conds: conds, Rewrite: rw, Backend: rule.backend})
		}
		if len(stack) > MaxEruDepth {
			return fail("more than %d tests on the path %s", MaxEruDepth, strings.Join(stack, " -> "))
		}
		if rule.typ == "path" && rw != nil {
			return fail("rule %q: path test after the rewriting rule %q (%s): its subject would be the rewritten path", name, rw.Rule, strings.Join(stack, " -> "))
		}
		// The succ branch: the test holds.
		sconds, srw := conds, rw
		switch {
		case rule.typ == "ua":
			sconds = appendCond(conds, Cond{Field: FieldUA, Kind: CondRegex, Value: rule.pattern, re: rule.re})
		case !rule.regex:
			sconds = appendCond(conds, Cond{Field: FieldPath, Kind: CondPrefix, Value: rule.pattern})
		case rule.rewrite:
			srw = &EntryRewrite{Kind: RewriteEru, Pattern: rule.pattern, re: rule.re, Rule: name}
		default:
			sconds = appendCond(conds, Cond{Field: FieldPath, Kind: CondRegex, Value: rule.pattern, re: rule.re})
		}
		if rule.succ == "" {
			if err := emit(Entry{Source: strings.Join(stack, ">") + ">(no succ)", Conds: sconds, Rewrite: srw, Backend: StatusBackend(eruDeadEnd), Status: eruDeadEnd}); err != nil {
				return err
			}
		} else if err := walk(rule.succ, sconds, srw, stack); err != nil {
			return err
		}
		// The fail branch: earlier entries took every request the test holds for.
		if rule.fail == "" {
			return emit(Entry{Source: strings.Join(stack, ">") + ">(no fail)", Conds: conds, Rewrite: rw, Backend: StatusBackend(eruDeadEnd), Status: eruDeadEnd})
		}
		return walk(rule.fail, conds, rw, stack)
	}
	if err := walk(r.Init, nil, nil, nil); err != nil {
		return nil, err
	}
	var unreachable []string
	for _, n := range names {
		if !reached[n] {
			unreachable = append(unreachable, n)
		}
	}
	if len(unreachable) > 0 {
		return nil, fail("rules unreachable from init %q: %s", r.Init, strings.Join(unreachable, ", "))
	}
	return out, nil
}

func appendCond(c []Cond, x Cond) []Cond {
	return append(c[:len(c):len(c)], x)
}

func parseEruRule(name string, r EruRule, t EruTargets) (*eruRule, error) {
	rule := &eruRule{name: name, typ: r.Type}
	allowed := map[string][]string{
		"ua":      {"pattern", "succ", "fail"},
		"path":    {"pattern", "regex", "rewrite", "succ", "fail"},
		"backend": {"servername"},
	}
	keys, ok := allowed[r.Type]
	if !ok {
		return nil, fmt.Errorf("unknown type %q: want ua, path or backend", clip(r.Type))
	}
	argNames := make([]string, 0, len(r.Args))
	for k := range r.Args {
		argNames = append(argNames, k)
	}
	sort.Strings(argNames)
	for _, k := range argNames {
		known := false
		for _, a := range keys {
			known = known || a == k
		}
		if !known {
			if r.Type == "backend" {
				return nil, fmt.Errorf("backend arg %q: only servername is accepted (Eru turns other args into request headers; clb does not)", clip(k))
			}
			return nil, fmt.Errorf("unknown arg %q for type %s: want %s", clip(k), r.Type, strings.Join(keys, ", "))
		}
	}
	str := func(k string) (string, error) {
		v, ok := r.Args[k]
		if !ok || v == nil {
			return "", nil
		}
		s, ok := v.(string)
		if !ok {
			return "", fmt.Errorf("arg %s: want a string, got %T", k, v)
		}
		return s, nil
	}
	boolean := func(k string) (bool, error) {
		v, ok := r.Args[k]
		if !ok || v == nil {
			return false, nil
		}
		b, ok := v.(bool)
		if !ok {
			return false, fmt.Errorf("arg %s: want true or false, got %v", k, v)
		}
		return b, nil
	}
	var err error
	if r.Type == "backend" {
		sn, err := str("servername")
		if err != nil {
			return nil, err
		}
		if sn == "" {
			return nil, errors.New("backend rule has no servername")
		}
		be, err := t.Upstream(sn)
		if err != nil {
			if errors.Is(err, ErrUnknownService) || errors.Is(err, ErrInvalid) {
				return nil, err
			}
			return nil, fmt.Errorf("%w %q: %v", ErrUnknownService, sn, err)
		}
		if !backendRe.MatchString(be) {
			return nil, fmt.Errorf("servername %q: backend name %q is not a haproxy name", clip(sn), clip(be))
		}
		rule.backend = be
		return rule, nil
	}
	if rule.succ, err = str("succ"); err != nil {
		return nil, err
	}
	if rule.fail, err = str("fail"); err != nil {
		return nil, err
	}
	if rule.pattern, err = str("pattern"); err != nil {
		return nil, err
	}
	if rule.pattern == "" {
		return nil, errors.New("pattern is required")
	}
	if r.Type == "path" {
		if rule.regex, err = boolean("regex"); err != nil {
			return nil, err
		}
		if rule.rewrite, err = boolean("rewrite"); err != nil {
			return nil, err
		}
		if !rule.regex {
			rule.rewrite = false // Eru applies a rewrite only with regex
			if err := validPath("prefix pattern", rule.pattern); err != nil {
				return nil, err
			}
			return rule, nil
		}
	}
	if rule.re, err = parseRegex(rule.pattern); err != nil {
		return nil, err
	}
	return rule, nil
}
