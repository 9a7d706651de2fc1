package cli

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/olekukonko/tablewriter"

	"github.com/hbench/hbench/methods"
	"github.com/hbench/hbench/registry"
	"github.com/hbench/hbench/workloads"
)

func init() {
	Register(&Command{
		Name:  "methods",
		Short: "list the selection methods and workloads with their parameters and defaults",
		Usage: "[NAME...]",
		Setup: func(fs *flag.FlagSet) func(context.Context, []string, io.Writer, io.Writer) error {
			return func(ctx context.Context, args []string, stdout, stderr io.Writer) error {
				want := map[string]bool{}
				for _, a := range args {
					if _, ok := methods.Registry.Lookup(a); !ok {
						if _, ok := workloads.Registry.Lookup(a); !ok {
							return Usagef("unknown method or workload %q", a)
						}
					}
					want[a] = true
				}
				fmt.Fprintln(stdout, "Methods (YAML: methods: [NAME, {NAME: {param: value}}]):")
				for _, m := range methods.Registry.All() {
					if len(want) == 0 || want[m.Name] {
						printEntry(stdout, m.Name, m.Doc, m.Defaults())
					}
				}
				fmt.Fprintln(stdout, "\nWorkloads (YAML: workloads: [{name: N, KIND: {param: value}}]):")
				for _, w := range workloads.Registry.All() {
					if len(want) == 0 || want[w.Name] {
						printEntry(stdout, w.Name, w.Doc, w.Defaults())
					}
				}
				return nil
			}
		},
	})
}

func printEntry(w io.Writer, name, doc string, defaults any) {
	fmt.Fprintf(w, "\n  %s: %s\n", name, doc)
	ps := registry.Params(defaults)
	if len(ps) == 0 {
		fmt.Fprintln(w, "    (no parameters)")
		return
	}
	t := tablewriter.NewWriter(w)
	t.Header("parameter", "type", "default", "meaning")
	for _, p := range ps {
		t.Append(p.Name, p.Type, p.Default, p.Doc)
	}
	t.Render()
}
