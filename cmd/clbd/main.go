// Command clbd is the clb load-balancer agent: it runs beside haproxy, takes authenticated
// register/unregister calls on port 8090 and applies them to haproxy. The command line is
// package internal/clbdcli; the daemon is package agent.
package main

import (
	"os"

	"clb/internal/clbdcli"
)

func main() {
	os.Exit(clbdcli.Main(os.Args, os.Stdout, os.Stderr))
}
