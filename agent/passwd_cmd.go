package agent

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

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
				return cli.Exit(err.Error(), 78)
			}
			path := passwordPath(cfg)
			if path == "" {
				return cli.Exit("no password file: keys_file is set and password_file is not (use clbd keys)", 64)
			}
			unlock, err := lockDirOf(path)
			if err != nil {
				return cli.Exit(err.Error(), 1)
			}
			defer unlock()
			o := owner{}
			if fi, err := os.Stat(path); err == nil {
				o = ownerOf(fi)
			} else if !errors.Is(err, fs.ErrNotExist) {
				return cli.Exit(err.Error(), 1)
			}
			if err := o.mayEdit(path); err != nil {
				return cli.Exit(err.Error(), 1)
			}
			secret, err := auth.NewSecret()
			if err != nil {
				return cli.Exit(err.Error(), 1)
			}
			if err := writePrivate(path, []byte(secret+"\n"), o); err != nil {
				return cli.Exit(err.Error(), 1)
			}
			fmt.Fprintf(stderr, "new password for key %q in %s; clbd uses it at once. It follows on stdout and is not shown again.\n", auth.DefaultKeyID, path)
			fmt.Fprintln(stdout, secret)
			return nil
		},
	}
}

// passwordPath is the password file clbd reads: password_file, or STATE_DIR/password when
// neither it nor a keys file is configured; "" when only a keys file is.
func passwordPath(cfg *Config) string {
	switch {
	case cfg.PasswordFile != "":
		return cfg.PasswordFile
	case cfg.KeysFile == "":
		return filepath.Join(cfg.StateDir, passwordFileName)
	}
	return ""
}
