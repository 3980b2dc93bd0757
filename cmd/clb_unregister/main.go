// Command clb_unregister removes this machine from a service load-balanced by clbd.
// See register.App for the usage.
package main

import (
	"os"

	"clb/register"
)

func main() {
	// register.Main chooses unregistering by the program name, fixed here.
	args := append([]string{"clb_unregister"}, os.Args[1:]...)
	os.Exit(register.Main(args, os.Stdout, os.Stderr))
}
