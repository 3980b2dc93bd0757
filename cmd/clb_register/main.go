// Command clb_register registers this machine as a member of a service load-balanced by clbd.
// See register.App for the usage.
package main

import (
	"os"

	"clb/register"
)

func main() {
	// The program name is fixed so that a renamed or symlinked binary keeps registering.
	args := append([]string{"clb_register"}, os.Args[1:]...)
	os.Exit(register.Main(args, os.Stdout, os.Stderr))
}
