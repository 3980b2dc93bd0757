// Command gendocs writes the man pages and shell completions of clbd, clb_register and
// clb_unregister from their urfave/cli definitions, so that they never drift from the flags.
// `make deb` runs it; the packages ship its output.
//
//	go run ./internal/tools/gendocs -o build/docs
//
// writes man/clbd.8.gz, man/clb_register.1.gz, man/clb_unregister.1.gz (gzip -9n style: no
// name, no time stamp, so builds are reproducible), bash/PROGRAM and fish/PROGRAM.fish.
package main

import (
	"bytes"
	"compress/gzip"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"

	"clb/internal/clbdcli"
	"clb/register"
)

func main() {
	out := flag.String("o", "build/docs", "output directory")
	flag.Parse()
	if err := run(*out); err != nil {
		fmt.Fprintf(os.Stderr, "gendocs: %v\n", err)
		os.Exit(1)
	}
}

type program struct {
	app     *cli.App
	section int
}

func programs() []program {
	return []program{
		{clbdcli.App(io.Discard, io.Discard), 8},
		{register.App("clb_register", false), 1},
		{register.App("clb_unregister", true), 1},
	}
}

func run(dir string) error {
	for _, sub := range []string{"man", "bash", "fish"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return err
		}
	}
	for _, p := range programs() {
		name := p.app.Name
		man, err := p.app.ToManWithSection(p.section)
		if err != nil {
			return fmt.Errorf("man page of %s: %w", name, err)
		}
		gz, err := gzipped([]byte(man))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, "man", fmt.Sprintf("%s.%d.gz", name, p.section)), gz, 0o644); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, "bash", name), []byte(bashCompletion(p.app)), 0o644); err != nil {
			return err
		}
		fish, err := p.app.ToFishCompletion()
		if err != nil {
			return fmt.Errorf("fish completion of %s: %w", name, err)
		}
		if err := os.WriteFile(filepath.Join(dir, "fish", name+".fish"), []byte(fish), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// gzipped compresses like gzip -9n: no file name or time stamp in the header.
func gzipped(b []byte) ([]byte, error) {
	var buf bytes.Buffer
	w, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(b); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// bashCompletion is a static completion script: the words offered depend on the subcommand
// path typed so far (visible subcommands and flags of that command). Unlike urfave's dynamic
// script it neither runs the program nor evals the command line.
func bashCompletion(app *cli.App) string {
	fn := "_" + strings.NewReplacer("-", "_", ".", "_").Replace(app.Name)
	var cases strings.Builder
	var walk func(path string, cmds []*cli.Command, flags []cli.Flag)
	walk = func(path string, cmds []*cli.Command, flags []cli.Flag) {
		var words []string
		for _, c := range cmds {
			if !c.Hidden {
				words = append(words, c.Name)
			}
		}
		fmt.Fprintf(&cases, "    %q) cmds=%q flags=%q ;;\n", path, strings.Join(words, " "), strings.Join(append(flagWords(flags), "--help"), " "))
		for _, c := range cmds {
			if !c.Hidden {
				walk(strings.TrimSpace(path+" "+c.Name), c.Subcommands, c.Flags)
			}
		}
	}
	walk("", app.Commands, app.Flags)
	var names []string
	var collect func(cmds []*cli.Command)
	collect = func(cmds []*cli.Command) {
		for _, c := range cmds {
			if !c.Hidden && !slices.Contains(names, c.Name) {
				names = append(names, c.Name)
			}
			collect(c.Subcommands)
		}
	}
	collect(app.Commands)
	sub := "__none__"
	if len(names) > 0 {
		sub = strings.Join(names, "|")
	}
	return fmt.Sprintf(`# bash completion for %[1]s, generated from its command-line definition
# (internal/tools/gendocs); do not edit.
%[2]s() {
  local cur=${COMP_WORDS[COMP_CWORD]} path="" cmds="" flags="" i
  for ((i = 1; i < COMP_CWORD; i++)); do
    case ${COMP_WORDS[i]} in
      %[3]s) path="${path:+$path }${COMP_WORDS[i]}" ;;
    esac
  done
  case $path in
%[4]s  esac
  if [[ $cur == -* ]]; then
    COMPREPLY=($(compgen -W "$flags" -- "$cur"))
  else
    COMPREPLY=($(compgen -W "$cmds" -- "$cur"))
  fi
}
complete -o default -o bashdefault -F %[2]s %[1]s
`, app.Name, fn, sub, cases.String())
}

func flagWords(flags []cli.Flag) []string {
	var out []string
	for _, f := range flags {
		if v, ok := f.(cli.VisibleFlag); ok && !v.IsVisible() {
			continue
		}
		for _, n := range f.Names() {
			if len(n) == 1 {
				out = append(out, "-"+n)
			} else {
				out = append(out, "--"+n)
			}
		}
	}
	return out
}
