package clbdcli

import (
	"clb/agent/config"

	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"clb/internal/atomicfile"
	"clb/internal/auth"
)

// keysCommand is `clbd keys`: manage the keys file. Secrets are printed once, alone on
// stdout (so `clbd keys add ... > member.secret` captures exactly the secret); the
// explanations go to stderr. clbd picks up every change by itself (the file is watched).
func keysCommand(stdout, stderr io.Writer) *cli.Command {
	fileFlags := []cli.Flag{
		&cli.StringFlag{Name: "keys-file", Usage: "keys file to manage (default: keys_file of --config)"},
		&cli.StringFlag{Name: "config", Value: config.DefaultConfigPath, Usage: "clbd config file naming keys_file"},
	}
	return &cli.Command{
		Name:  "keys",
		Usage: "add, list, rotate and revoke API keys in the keys file (hot-reloaded by clbd)",
		Subcommands: []*cli.Command{
			{
				Name: "add", Usage: "add a key and print its secret once", ArgsUsage: "ID",
				Flags: append([]cli.Flag{
					&cli.StringFlag{Name: "scope", Value: auth.ScopeNameRegister, Usage: "register (named services) or admin"},
					&cli.StringSliceFlag{Name: "service", Usage: "service `GLOB` a register key may use (repeat; \"*\" for all)"},
					&cli.StringSliceFlag{Name: "domain", Usage: "gateway domain `GLOB` a register key may change (repeat; \"*.example.com\")"},
				}, fileFlags...),
				Action: func(c *cli.Context) error {
					id, err := oneArg(c, "ID")
					if err != nil {
						return err
					}
					return editKeys(c, stdout, stderr, func(f *auth.KeysFile) (string, string, error) {
						if f.Find(id) >= 0 {
							return "", "", fmt.Errorf("key %q exists; use `clbd keys rotate`", id)
						}
						secret, err := auth.NewSecret()
						if err != nil {
							return "", "", err
						}
						k := auth.FileKey{ID: id, Secret: secret, Scope: c.String("scope"), Services: c.StringSlice("service"), Domains: c.StringSlice("domain"), Created: now()}
						f.Keys = append(f.Keys, k)
						return secret, fmt.Sprintf("added key %s (scope %s)", id, k.ScopeOf()), nil
					})
				},
			},
			{
				Name: "list", Usage: "list the keys (never their secrets)", Flags: fileFlags,
				Action: func(c *cli.Context) error {
					if c.NArg() > 0 {
						return cli.Exit("keys list takes no arguments", ExitUsage)
					}
					path, err := keysPath(c)
					if err != nil {
						return err
					}
					f, _, err := loadKeysForEdit(path)
					if err != nil {
						return cli.Exit(err.Error(), ExitFailure)
					}
					tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
					fmt.Fprintln(tw, "ID\tSCOPE\tSERVICES\tCREATED")
					for _, k := range f.Keys {
						services := strings.Join(k.Services, ",")
						if k.Scope == auth.ScopeNameAdmin {
							services = "(all)"
						}
						fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", k.ID, k.Scope, services, k.Created)
					}
					return tw.Flush()
				},
			},
			{
				Name: "rotate", Usage: "add NEW with OLD's scope (then move members to NEW and revoke OLD); --in-place replaces OLD's secret at once",
				ArgsUsage: "OLD NEW | --in-place ID",
				Flags:     append([]cli.Flag{&cli.BoolFlag{Name: "in-place", Usage: "give the key a new secret now; members using the old one are refused from now on"}}, fileFlags...),
				Action: func(c *cli.Context) error {
					args := c.Args().Slice()
					inPlace := c.Bool("in-place")
					if inPlace && len(args) != 1 || !inPlace && len(args) != 2 {
						return cli.Exit("usage: clbd keys rotate OLD NEW, or clbd keys rotate --in-place ID", ExitUsage)
					}
					return editKeys(c, stdout, stderr, func(f *auth.KeysFile) (string, string, error) {
						i := f.Find(args[0])
						if i < 0 {
							return "", "", fmt.Errorf("no key %q", args[0])
						}
						secret, err := auth.NewSecret()
						if err != nil {
							return "", "", err
						}
						if inPlace {
							f.Keys[i].Secret, f.Keys[i].Created = secret, now()
							return secret, fmt.Sprintf("key %s has a new secret; the old one is refused once clbd reloads the file", args[0]), nil
						}
						if f.Find(args[1]) >= 0 {
							return "", "", fmt.Errorf("key %q exists", args[1])
						}
						k := f.Keys[i]
						k.ID, k.Secret, k.Created = args[1], secret, now()
						f.Keys = append(f.Keys, k)
						return secret, fmt.Sprintf("added key %s with the scope of %s (%s); move the members to it, then run: clbd keys revoke %s", k.ID, args[0], k.ScopeOf(), args[0]), nil
					})
				},
			},
			{
				Name: "revoke", Usage: "remove a key; clbd refuses it as soon as it has reloaded the file", ArgsUsage: "ID", Flags: fileFlags,
				Action: func(c *cli.Context) error {
					id, err := oneArg(c, "ID")
					if err != nil {
						return err
					}
					return editKeys(c, stdout, stderr, func(f *auth.KeysFile) (string, string, error) {
						i := f.Find(id)
						if i < 0 {
							return "", "", fmt.Errorf("no key %q", id)
						}
						f.Keys = append(f.Keys[:i], f.Keys[i+1:]...)
						return "", "revoked key " + id, nil
					})
				},
			},
		},
	}
}

func now() string { return time.Now().UTC().Format(time.RFC3339) }

func oneArg(c *cli.Context, name string) (string, error) {
	for _, a := range c.Args().Slice()[min(1, c.NArg()):] {
		if strings.HasPrefix(a, "-") {
			return "", cli.Exit(fmt.Sprintf("flag %s after %s: flags must come first (clbd keys %s [flags] %s)", a, name, c.Command.Name, name), ExitUsage)
		}
	}
	if c.NArg() != 1 {
		return "", cli.Exit(fmt.Sprintf("want one argument %s, got %d", name, c.NArg()), ExitUsage)
	}
	return c.Args().First(), nil
}

// keysPath is --keys-file, or keys_file of the config file.
func keysPath(c *cli.Context) (string, error) {
	if p := str(c, "keys-file"); p != "" {
		return p, nil
	}
	cfg := config.Defaults()
	if err := config.LoadFile(&cfg, str(c, "config")); err != nil {
		return "", cli.Exit(fmt.Sprintf("no --keys-file, and %v", err), ExitUsage)
	}
	if cfg.KeysFile == "" {
		return "", cli.Exit(fmt.Sprintf("no --keys-file, and %s sets no keys_file", str(c, "config")), ExitUsage)
	}
	return cfg.KeysFile, nil
}

// owner is the owner of an existing keys file, kept when the file is rewritten.
type owner struct {
	exists   bool
	uid, gid int
}

// ownerOf is the owner of an existing file.
func ownerOf(fi fs.FileInfo) owner {
	o := owner{exists: true, uid: os.Getuid(), gid: os.Getgid()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		o.uid, o.gid = int(st.Uid), int(st.Gid)
	}
	return o
}

// mayEdit refuses to replace another user's secret file unless the caller is root.
func (o owner) mayEdit(path string) error {
	if o.exists && os.Getuid() != 0 && o.uid != os.Getuid() {
		return fmt.Errorf("%s belongs to uid %d: run this as that user (clbd's) or as root", path, o.uid)
	}
	return nil
}

// lockDirOf takes an exclusive flock on the directory holding path, so that two `clbd keys`
// (or `clbd passwd`) runs read-modify-write the file one after the other instead of losing
// one's change. No lock file is left behind; clbd itself only reads and needs no lock.
func lockDirOf(path string) (unlock func(), err error) {
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", filepath.Dir(path), err)
	}
	if err := syscall.Flock(int(d.Fd()), syscall.LOCK_EX); err != nil {
		d.Close()
		return nil, fmt.Errorf("lock %s: %w", filepath.Dir(path), err)
	}
	return func() {
		syscall.Flock(int(d.Fd()), syscall.LOCK_UN)
		d.Close()
	}, nil
}

// writePrivate replaces path with data atomically, mode 0600, keeping the owner it had (root
// editing clb-server's file must not make it unreadable for clbd).
func writePrivate(path string, data []byte, o owner) error {
	tmp, err := atomicfile.WriteTemp(path, data, 0o600)
	if err != nil {
		return err
	}
	if o.exists && (o.uid != os.Getuid() || o.gid != os.Getgid()) {
		if err := os.Chown(tmp, o.uid, o.gid); err != nil {
			os.Remove(tmp)
			return fmt.Errorf("keep the owner of %s: %w", path, err)
		}
	}
	return atomicfile.Install(tmp, path)
}

// loadKeysForEdit reads the keys file, or an empty one when it does not exist yet. The file
// must be private to its owner; the owner must be the caller unless the caller is root.
func loadKeysForEdit(path string) (*auth.KeysFile, owner, error) {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &auth.KeysFile{}, owner{}, nil
	}
	if err != nil {
		return nil, owner{}, fmt.Errorf("keys file: %w", err)
	}
	o := ownerOf(fi)
	if err := o.mayEdit(path); err != nil {
		return nil, o, err
	}
	f, err := auth.LoadKeysFile(path, o.uid)
	return f, o, err
}

// editKeys applies edit to the keys file and writes it back atomically with mode 0600 and
// the previous owner, then prints the secret (if any) to stdout and the message to stderr.
func editKeys(c *cli.Context, stdout, stderr io.Writer, edit func(*auth.KeysFile) (secret, msg string, err error)) error {
	path, err := keysPath(c)
	if err != nil {
		return err
	}
	unlock, err := lockDirOf(path)
	if err != nil {
		return cli.Exit(err.Error(), ExitFailure)
	}
	defer unlock()
	f, o, err := loadKeysForEdit(path)
	if err != nil {
		return cli.Exit(err.Error(), ExitFailure)
	}
	secret, msg, err := edit(f)
	if err != nil {
		return cli.Exit(err.Error(), ExitFailure)
	}
	if err := f.Validate(); err != nil {
		return cli.Exit(err.Error(), ExitUsage)
	}
	data, err := f.Marshal()
	if err != nil {
		return cli.Exit(err.Error(), ExitFailure)
	}
	if err := writePrivate(path, data, o); err != nil {
		return cli.Exit(err.Error(), ExitFailure)
	}
	fmt.Fprintf(stderr, "%s in %s\n", msg, path)
	if secret != "" {
		fmt.Fprintln(stderr, "The secret follows on stdout and is not shown again; give it to the member as its password file, with --key-id.")
		fmt.Fprintln(stdout, secret)
	}
	if !o.exists {
		fmt.Fprintf(stderr, "Created %s (mode 0600, owned by uid %d): clbd refuses it unless clbd runs as that user.\n", path, os.Getuid())
	}
	return nil
}
