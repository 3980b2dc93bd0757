package clbdcli

import (
	"clb/agent/config"

	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/urfave/cli/v2"

	"clb/internal/auth"
)

// passwdCommand is `clbd passwd`: a new shared password (the 2010 password, key "default")
// in the password file. clbd watches the file and uses the new password at once; members
// still holding the old one are refused from then on, so rotating without refusals is what
// the keys file is for (SECURITY.md).
func passwdCommand(stdout, stderr io.Writer) *cli.Command {
	return &cli.Command{
		Name:  "passwd",
		Usage: "set a new random shared password (key \"default\") in the password file and print it once",
		Flags: flags(),
		Action: func(c *cli.Context) error {
			cfg, _, err := configFromCLI(c)
			if err != nil {
				return cli.Exit(err.Error(), ExitConfig)
			}
			path := config.PasswordPath(cfg)
			if path == "" {
				return cli.Exit("no password file: keys_file is set and password_file is not (use clbd keys)", ExitUsage)
			}
			unlock, err := lockDirOf(path)
			if err != nil {
				return cli.Exit(err.Error(), ExitFailure)
			}
			defer unlock()
			o := owner{}
			if fi, err := os.Stat(path); err == nil {
				o = ownerOf(fi)
			} else if !errors.Is(err, fs.ErrNotExist) {
				return cli.Exit(err.Error(), ExitFailure)
			}
			if err := o.mayEdit(path); err != nil {
				return cli.Exit(err.Error(), ExitFailure)
			}
			secret, err := auth.NewSecret()
			if err != nil {
				return cli.Exit(err.Error(), ExitFailure)
			}
			if err := writePrivate(path, []byte(secret+"\n"), o); err != nil {
				return cli.Exit(err.Error(), ExitFailure)
			}
			fmt.Fprintf(stderr, "new password for key %q in %s; clbd uses it at once. It follows on stdout and is not shown again.\n", auth.DefaultKeyID, path)
			fmt.Fprintln(stdout, secret)
			return nil
		},
	}
}
