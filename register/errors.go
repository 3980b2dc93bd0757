package register

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
)

// Exit codes of clb_register and clb_unregister. Scripts may rely on them (SPEC section 1);
// the values follow sysexits.h where one fits.
const (
	// ExitOK means the change is applied: haproxy routes to, or has stopped routing to, the member.
	ExitOK = 0
	// ExitRefused means the server refused the request for a reason other than authentication
	// (bad input, unknown service or member, conflict): retrying will not help.
	ExitRefused = 1
	// ExitUsage means bad command-line usage or local configuration (EX_USAGE).
	ExitUsage = 64
	// ExitUnreachable means no usable answer from the server within the timeout (EX_UNAVAILABLE).
	ExitUnreachable = 69
	// ExitNotApplied means the server accepted and stored the change but could not confirm that
	// haproxy applied it within the timeout (EX_TEMPFAIL).
	ExitNotApplied = 75
	// ExitAuth means the server refused the credentials or their scope (EX_NOPERM).
	ExitAuth = 77
)

// Kind classifies an Error by what the caller can do about it.
type Kind int

// The kinds of Error, one per non-zero exit code.
const (
	// KindRefused: the server refused the request for a reason other than authentication.
	KindRefused Kind = iota + 1
	// KindUsage: bad arguments or local configuration; nothing was sent.
	KindUsage
	// KindUnreachable: no usable answer within the timeout (network errors, 429, 500,
	// 502-504).
	KindUnreachable
	// KindNotApplied: the server stored the change but did not confirm it applied.
	KindNotApplied
	// KindAuth: the server refused the credentials (401) or their scope (403).
	KindAuth
)

// ExitCode returns the exit code of the kind.
func (k Kind) ExitCode() int {
	switch k {
	case KindUsage:
		return ExitUsage
	case KindUnreachable:
		return ExitUnreachable
	case KindNotApplied:
		return ExitNotApplied
	case KindAuth:
		return ExitAuth
	default:
		return ExitRefused
	}
}

// Error is a failed register or unregister call.
type Error struct {
	Kind Kind
	// Status and Code are the HTTP status and the machine word of the server's last answer;
	// zero when there was none.
	Status int
	Code   string
	// Message is the server's sentence, or a description of the local problem.
	Message string
	// Attempts is the number of requests sent.
	Attempts int
	// Err is the underlying error, if any (a network error, say).
	Err error
}

// Error returns one line that names the kind of failure and the server's sentence.
func (e *Error) Error() string {
	var what string
	switch e.Kind {
	case KindUsage:
		return e.Message
	case KindAuth:
		what = "server refused the credentials"
	case KindNotApplied:
		what = "change accepted but not applied"
	case KindUnreachable:
		what = "server unavailable"
		if e.Status == 0 {
			what = "cannot reach the server"
		}
	default:
		what = "server refused the request"
	}
	var detail string
	if e.Status != 0 {
		detail = strconv.Itoa(e.Status)
		if e.Code != "" {
			detail += " " + e.Code
		} else {
			detail += " " + http.StatusText(e.Status)
		}
	}
	if e.Attempts > 1 {
		if detail != "" {
			detail += ", "
		}
		detail += strconv.Itoa(e.Attempts) + " attempts"
	}
	if detail != "" {
		what += " (" + detail + ")"
	}
	msg := e.Message
	if msg == "" && e.Err != nil {
		msg = e.Err.Error()
	}
	if msg != "" {
		what += ": " + msg
	}
	return what
}

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

// ExitCode maps an error of Register, Unregister or the CLI to an exit code: ExitOK for nil,
// the kind's code for an *Error, ExitRefused for anything else.
func ExitCode(err error) int {
	if err == nil {
		return ExitOK
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Kind.ExitCode()
	}
	return ExitRefused
}

// usageErrorf returns a KindUsage error.
func usageErrorf(format string, args ...any) *Error {
	return &Error{Kind: KindUsage, Message: fmt.Sprintf(format, args...)}
}
