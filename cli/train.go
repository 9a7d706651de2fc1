package cli

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/hbench/hbench/attn"
	"github.com/hbench/hbench/methods"
	"github.com/hbench/hbench/registry"
	"github.com/hbench/hbench/train"
	"github.com/hbench/hbench/workloads"
)

// trainFile is the file `hbench train --config` reads:
//
//	data:                       # one workload entry, as in an experiment
//	  capture: {files: ["../../shared/data/qkv/persuasion-L*.safetensors"]}
//	train:                      # train.Config; omitted fields keep their defaults
//	  to: 6144
//
// Relative paths resolve against the file's directory.
type trainFile struct {
	Data  yaml.Node    `yaml:"data"`
	Train train.Config `yaml:"train"`
}

func init() {
	Register(&Command{
		Name:  "train",
		Short: "train HashAttention's query and key maps; writes a hashattention-weights/1 file",
		Usage: "--out WEIGHTS.safetensors [--config TRAIN.yaml] [flags] [CAPTURE.safetensors...]",
		Setup: func(fs *flag.FlagSet) func(context.Context, []string, io.Writer, io.Writer) error {
			cfgPath := fs.String("config", "", "training file (`YAML`: data and train blocks); capture files given as arguments replace its data")
			out := fs.String("out", "", "weights file to write (`path`)")
			cache := fs.String("cache", "", "reuse weights trained with the same config and data from this `directory` (train and store them there otherwise)")
			quiet := fs.Bool("quiet", false, "no progress bar")
			// Overrides of the config (or the defaults).
			bits := fs.Int("bits", 0, "hash bits (default 32)")
			epochs := fs.Int("epochs", 0, "maximum epochs")
			queries := fs.Int("queries", 0, "training query positions per head and sequence")
			from := fs.Int("from", 0, "first query position sampled")
			to := fs.Int("to", 0, "query positions sampled are < `N` (later ones stay unseen for evaluation)")
			layers := fs.String("layers", "", "comma-separated layers to train (default all)")
			heads := fs.String("heads", "", "comma-separated query heads to train (default all)")
			seed := fs.Uint64("seed", 0, "seed")
			workers := fs.Int("workers", 0, "heads trained in parallel (default: number of CPUs)")
			return func(ctx context.Context, args []string, stdout, stderr io.Writer) error {
				if *out == "" {
					return Usagef("--out is required")
				}
				if *cfgPath == "" && len(args) == 0 {
					return Usagef("give --config TRAIN.yaml or capture files")
				}
				tf := trainFile{Train: train.Defaults()}
				var dir string
				if *cfgPath != "" {
					b, err := os.ReadFile(*cfgPath)
					if err != nil {
						return err
					}
					dec := yaml.NewDecoder(bytes.NewReader(b))
					dec.KnownFields(true)
					if err := dec.Decode(&tf); err != nil && !errors.Is(err, io.EOF) {
						return fmt.Errorf("%s: %s", *cfgPath, cleanYAML(err))
					}
					dir = filepath.Dir(*cfgPath)
				}
				cfg := &tf.Train
				var errs []error
				fs.Visit(func(f *flag.Flag) {
					var err error
					switch f.Name {
					case "bits":
						cfg.Bits = *bits
					case "epochs":
						cfg.Epochs = *epochs
					case "queries":
						cfg.Queries = *queries
					case "from":
						cfg.From = *from
					case "to":
						cfg.To = *to
					case "seed":
						cfg.Seed = *seed
					case "workers":
						cfg.Workers = *workers
					case "layers":
						cfg.Layers, err = parseInts(*layers)
					case "heads":
						cfg.Heads, err = parseInts(*heads)
					}
					if err != nil {
						errs = append(errs, fmt.Errorf("--%s: %w", f.Name, err))
					}
				})
				if err := errors.Join(errs...); err != nil {
					return Usagef("%v", err)
				}
				if err := cfg.Validate(); err != nil {
					where := "flags"
					if *cfgPath != "" {
						where = *cfgPath + ": train"
					}
					return fmt.Errorf("%s: %w", where, err)
				}
				groups, files, err := trainData(&tf, dir, *cfgPath, args)
				if err != nil {
					return err
				}
				var progress io.Writer
				if !*quiet {
					progress = stderr
				}
				var w *methods.HashWeights
				if *cache != "" {
					path, err := train.Cached(ctx, *cache, *cfg, groups, progress)
					if err != nil {
						return err
					}
					if w, err = methods.LoadHashWeights(path); err != nil {
						return err
					}
				} else if w, _, err = train.Train(ctx, *cfg, groups, progress); err != nil {
					return err
				}
				if err := train.AddFiles(w, files); err != nil {
					return err
				}
				if err := w.Save(*out); err != nil {
					return fmt.Errorf("write %s: %w", *out, err)
				}
				fmt.Fprintf(stdout, "%s: %d maps (%s), %d bits\n", *out, len(w.Maps), mapList(w), w.Bits)
				return nil
			}
		},
	})
}

// trainData loads the training Groups: capture files given as arguments,
// or the data entry of the training file. It returns the source files for
// the provenance record.
func trainData(tf *trainFile, dir, cfgPath string, args []string) ([]*attn.Group, []string, error) {
	if len(args) > 0 {
		var groups []*attn.Group
		for _, a := range args {
			c, err := workloads.ReadCapture(a)
			if err != nil {
				return nil, nil, err
			}
			groups = append(groups, c.Groups("capture")...)
		}
		return groups, args, nil
	}
	n := &tf.Data
	if n.Kind == 0 {
		return nil, nil, fmt.Errorf("%s: no data block (data: {capture: {files: [...]}}) and no capture files given", cfgPath)
	}
	if n.Kind != yaml.MappingNode || len(n.Content) != 2 {
		return nil, nil, fmt.Errorf("%s:%d: data: must be one workload entry, e.g. {capture: {files: [...]}} (known: %s)", cfgPath, n.Line, strings.Join(workloads.Registry.Names(), ", "))
	}
	name, body := n.Content[0], n.Content[1]
	spec, ok := workloads.Registry.Lookup(name.Value)
	if !ok {
		return nil, nil, fmt.Errorf("%s:%d: data: unknown workload %q (known: %s)", cfgPath, name.Line, name.Value, strings.Join(workloads.Registry.Names(), ", "))
	}
	params := spec.Defaults()
	if body.Kind != yaml.ScalarNode || body.Tag != "!!null" {
		// Node.Decode ignores KnownFields: check the keys against the
		// parameter struct first, so each unknown key gets its line.
		if body.Kind != yaml.MappingNode {
			return nil, nil, fmt.Errorf("%s:%d: data.%s: must be a mapping of parameters", cfgPath, body.Line, name.Value)
		}
		var known []string
		for _, p := range registry.Params(params) {
			known = append(known, p.Name)
		}
		for i := 0; i < len(body.Content); i += 2 {
			if k := body.Content[i]; !slices.Contains(known, k.Value) {
				return nil, nil, fmt.Errorf("%s:%d: data.%s: unknown parameter %q (known: %s)", cfgPath, k.Line, name.Value, k.Value, strings.Join(known, ", "))
			}
		}
		if err := body.Decode(params); err != nil {
			return nil, nil, fmt.Errorf("%s: data.%s: %s", cfgPath, name.Value, cleanYAML(err))
		}
	}
	if v, ok := params.(interface{ Validate() error }); ok {
		if err := v.Validate(); err != nil {
			return nil, nil, fmt.Errorf("%s:%d: data.%s: %w", cfgPath, body.Line, name.Value, err)
		}
	}
	wl, err := spec.New(params, workloads.Env{Dir: dir})
	if err != nil {
		return nil, nil, fmt.Errorf("%s:%d: data.%s: %w", cfgPath, body.Line, name.Value, err)
	}
	groups, err := wl.Groups()
	if err != nil {
		return nil, nil, fmt.Errorf("%s: data.%s: %w", cfgPath, name.Value, err)
	}
	var files []string
	if cp, ok := params.(*workloads.CaptureParams); ok {
		if files, err = workloads.ResolveGlobs(dir, cp.Files); err != nil {
			return nil, nil, err
		}
	}
	return groups, files, nil
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			return nil, fmt.Errorf("%q is not an integer", f)
		}
		out = append(out, n)
	}
	return out, nil
}

func mapList(w *methods.HashWeights) string {
	keys := make([][2]int, 0, len(w.Maps))
	for k := range w.Maps {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		return keys[i][0] < keys[j][0] || keys[i][0] == keys[j][0] && keys[i][1] < keys[j][1]
	})
	s := make([]string, len(keys))
	for i, k := range keys {
		s[i] = fmt.Sprintf("L%d.H%d", k[0], k[1])
	}
	return strings.Join(s, " ")
}

// cleanYAML turns a yaml.v3 error into one line per problem, without the
// package's prefixes.
func cleanYAML(err error) string {
	s := strings.TrimPrefix(err.Error(), "yaml: ")
	s = strings.TrimPrefix(s, "unmarshal errors:\n")
	var lines []string
	for _, l := range strings.Split(s, "\n") {
		lines = append(lines, strings.TrimSpace(l))
	}
	return strings.Join(lines, "; ")
}
