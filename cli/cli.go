// Package cli implements the hbench command line. Main is the whole
// program as one testable function; each subcommand lives in its own file
// and registers itself with Register.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
)

// Command is one hbench subcommand.
type Command struct {
	// Name is the subcommand word.
	Name string
	// Short is a one-line description for the command list.
	Short string
	// Usage is the argument synopsis, e.g. "[flags] FILE.yaml".
	Usage string
	// Long, if set, returns more help printed after Short.
	Long func() string
	// Flags declares the command's flags on fs; the returned function runs
	// the command with the remaining arguments.
	Setup func(fs *flag.FlagSet) func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

var commands = map[string]*Command{}

// Register adds a subcommand; duplicates panic.
func Register(c *Command) {
	if _, dup := commands[c.Name]; dup {
		panic("cli: duplicate command " + c.Name)
	}
	commands[c.Name] = c
}

// ErrUsage marks an error as a usage error (exit status 2).
var ErrUsage = errors.New("usage")

// Usagef returns a usage error with a message.
func Usagef(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrUsage, fmt.Sprintf(format, a...))
}

func printCommands(w io.Writer) {
	fmt.Fprintf(w, "hbench: measure how well decode-time sparse attention selects keys, and how fast it runs.\n\nUsage: hbench COMMAND [flags] [args]\n\nCommands:\n")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, commands[n].Short)
	}
	fmt.Fprintf(w, "\nRun 'hbench COMMAND --help' for a command's flags.\n")
}

// Main runs hbench with args (without the program name) and returns the
// exit status: 0 on success, 1 on failure, 2 on a usage error.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		if len(args) > 1 && args[0] == "help" {
			return Main(ctx, []string{args[1], "--help"}, stdout, stderr)
		}
		printCommands(stdout)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "hbench: unknown command %q\n\n", args[0])
		printCommands(stderr)
		return 2
	}
	fs := flag.NewFlagSet("hbench "+cmd.Name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	run := cmd.Setup(fs)
	usage := func(w io.Writer) {
		fs.SetOutput(w)
		fmt.Fprintf(w, "Usage: hbench %s %s\n\n%s\n", cmd.Name, cmd.Usage, cmd.Short)
		if cmd.Long != nil {
			fmt.Fprintf(w, "\n%s", cmd.Long())
		}
		var any bool
		fs.VisitAll(func(*flag.Flag) { any = true })
		if any {
			fmt.Fprintf(w, "\nFlags:\n")
			fs.PrintDefaults()
		}
	}
	fs.Usage = func() {} // printed below, once, to the right stream
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			usage(stdout)
			return 0
		}
		usage(stderr)
		return 2
	}
	if err := run(ctx, fs.Args(), stdout, stderr); err != nil {
		if errors.Is(err, ErrUsage) {
			fmt.Fprintf(stderr, "hbench %s: %s\n", cmd.Name, strings.TrimPrefix(err.Error(), "usage: "))
			fmt.Fprintf(stderr, "Usage: hbench %s %s\n", cmd.Name, cmd.Usage)
			return 2
		}
		fmt.Fprintf(stderr, "hbench %s: %v\n", cmd.Name, err)
		return 1
	}
	return 0
}
