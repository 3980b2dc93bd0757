package agent_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// A bounded HTTP load generator for the benchmarks. It speaks HTTP/1.1 over raw connections
// rather than through net/http's Transport, because the Transport silently retries an
// idempotent request whose reused connection turns out to be closed: exactly the failure a
// reload can cause and that wrk, curl or a browser would see. Here every request is sent once
// and every failure is counted.

// loadOpts describes one load run.
type loadOpts struct {
	addr      string // host:port of the frontend
	workers   int
	keepAlive bool          // reuse connections; otherwise "Connection: close" on every request
	max       int64         // bound on the number of requests
	limit     time.Duration // bound on the duration
	// srcNet is the third octet of the 127.0.X.Y source addresses (one per worker), so that
	// closed connections do not exhaust the ephemeral ports of one source address.
	srcNet int
}

// loadStats counts what a load run saw.
type loadStats struct {
	Requests int64 // requests sent (or attempted)
	OK       int64 // 2xx answers
	Non2xx   map[int]int64
	Failed   map[string]int64 // no answer, by cause
	Bodies   map[string]int64 // 2xx answers by body (the backends answer with their name)
	Conns    int64            // connections opened
	Elapsed  time.Duration
}

func (s loadStats) failed() int64 {
	var n int64
	for _, v := range s.Failed {
		n += v
	}
	return n
}

func (s loadStats) non2xx() int64 {
	var n int64
	for _, v := range s.Non2xx {
		n += v
	}
	return n
}

// causes formats the failure and non-2xx counts for a figure, "none" when there are none.
func (s loadStats) causes() string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(s.Failed)) {
		parts = append(parts, fmt.Sprintf("%d× %s", s.Failed[k], k))
	}
	for _, k := range slices.Sorted(maps.Keys(s.Non2xx)) {
		parts = append(parts, fmt.Sprintf("%d× HTTP %d", s.Non2xx[k], k))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// startLoad runs the load in the background until stop is called, ctx ends, or one of the
// bounds in o is reached; stop returns the counts.
func startLoad(ctx context.Context, o loadOpts) (stop func() loadStats) {
	ctx, cancel := context.WithTimeout(ctx, o.limit)
	var (
		sent  atomic.Int64
		conns atomic.Int64
		mu    sync.Mutex
		ok    int64
		non2  = map[int]int64{}
		fail  = map[string]int64{}
		body  = map[string]int64{}
		wg    sync.WaitGroup
		start = time.Now()
	)
	for w := range o.workers {
		wg.Go(func() {
			dialer := net.Dialer{Timeout: 3 * time.Second, LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, byte(o.srcNet), byte(1+w%250))}}
			var c *loadConn
			var myOK int64
			myNon := map[int]int64{}
			myFail := map[string]int64{}
			myBody := map[string]int64{}
			defer func() {
				if c != nil {
					c.Close()
				}
				mu.Lock()
				ok += myOK
				for k, v := range myNon {
					non2[k] += v
				}
				for k, v := range myFail {
					fail[k] += v
				}
				for k, v := range myBody {
					body[k] += v
				}
				mu.Unlock()
			}()
			for ctx.Err() == nil {
				if sent.Add(1) > o.max {
					sent.Add(-1)
					return
				}
				reused := c != nil
				if c == nil {
					nc, err := dialer.DialContext(ctx, "tcp", o.addr)
					if err != nil {
						if ctx.Err() != nil {
							sent.Add(-1) // stopped, not failed
							return
						}
						myFail[classify("connect", err, false)]++
						continue
					}
					conns.Add(1)
					c = &loadConn{Conn: nc, br: bufio.NewReader(nc)}
				}
				code, answer, closed, err := c.get(o.keepAlive)
				switch {
				case err != nil:
					myFail[classify("request", err, reused)]++
				case code >= 200 && code < 300:
					myOK++
					myBody[answer]++
				default:
					myNon[code]++
				}
				if err != nil || closed || !o.keepAlive {
					c.Close()
					c = nil
				}
			}
		})
	}
	return func() loadStats {
		cancel()
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		return loadStats{Requests: sent.Load(), OK: ok, Non2xx: non2, Failed: fail, Bodies: body, Conns: conns.Load(), Elapsed: time.Since(start)}
	}
}

type loadConn struct {
	net.Conn
	br *bufio.Reader
}

// get sends one GET and reads the whole answer; body is its first 64 bytes. closed reports
// that the server will close the connection after it.
func (c *loadConn) get(keepAlive bool) (code int, body string, closed bool, err error) {
	c.SetDeadline(time.Now().Add(5 * time.Second))
	req := "GET / HTTP/1.1\r\nHost: lb.test\r\nUser-Agent: clb-loadgen\r\n"
	if !keepAlive {
		req += "Connection: close\r\n"
	}
	if _, err := io.WriteString(c, req+"\r\n"); err != nil {
		return 0, "", true, fmt.Errorf("write: %w", err)
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		return 0, "", true, fmt.Errorf("read answer: %w", err)
	}
	head, err := io.ReadAll(io.LimitReader(resp.Body, 64))
	if err == nil {
		_, err = io.Copy(io.Discard, resp.Body)
	}
	resp.Body.Close()
	if err != nil {
		return resp.StatusCode, "", true, fmt.Errorf("read body: %w", err)
	}
	return resp.StatusCode, string(head), resp.Close, nil
}

// classify names a failure by phase and cause, e.g. "request on a reused connection: EOF".
func classify(phase string, err error, reused bool) string {
	where := phase
	if phase == "request" {
		where = "request on a new connection"
		if reused {
			where = "request on a reused connection"
		}
	}
	cause := err.Error()
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		cause = "EOF (closed without an answer)"
	case errors.Is(err, syscall.ECONNRESET):
		cause = "connection reset"
	case errors.Is(err, syscall.ECONNREFUSED):
		cause = "connection refused"
	case errors.Is(err, syscall.EPIPE):
		cause = "broken pipe"
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		cause = "no free source port"
	case errors.Is(err, os.ErrDeadlineExceeded):
		cause = "timeout (5s)"
	}
	return where + ": " + cause
}
