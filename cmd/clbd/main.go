// Command clbd is the clb load-balancer agent: it runs beside haproxy, takes authenticated
// register/unregister calls on port 8090 and applies them to haproxy. See package agent.
package main

import (
	"os"

	"clb/agent"
)

func main() {
	os.Exit(agent.Main(os.Args, os.Stdout, os.Stderr))
}
