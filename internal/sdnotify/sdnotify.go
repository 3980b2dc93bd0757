// Package sdnotify tells systemd about a service's state (sd_notify(3)): READY=1 for units of
// Type=notify, STOPPING=1, STATUS=... It is the protocol's one datagram on $NOTIFY_SOCKET, so
// clb needs no systemd library; without $NOTIFY_SOCKET (not under systemd) it does nothing.
package sdnotify

import (
	"fmt"
	"net"
	"os"
)

// Common states.
const (
	Ready    = "READY=1"
	Stopping = "STOPPING=1"
)

// Notify sends state (newline-separated VAR=value assignments) to the socket named by
// $NOTIFY_SOCKET. It reports whether a notification was sent: false, nil when the variable is
// unset.
func Notify(state string) (bool, error) {
	name := os.Getenv("NOTIFY_SOCKET")
	if name == "" {
		return false, nil
	}
	if name[0] == '@' { // an abstract socket
		name = "\x00" + name[1:]
	} else if name[0] != '/' {
		return false, fmt.Errorf("sd_notify: NOTIFY_SOCKET %q: want an absolute path or @abstract name", name)
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		return false, fmt.Errorf("sd_notify: %w", err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(state)); err != nil {
		return false, fmt.Errorf("sd_notify: %w", err)
	}
	return true, nil
}
