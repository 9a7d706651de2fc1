package workloads

import (
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/hbench/hbench/attn"
	"github.com/hbench/hbench/safetensors"
	"github.com/hbench/hbench/tensor"
)

// CaptureFormat is the format tag of capture files.
const CaptureFormat = "qkv-capture/1"

// Capture is one qkv-capture/1 file: the attention inputs of one layer over
// one window of T tokens. See ../shared/data/README.md for the format.
type Capture struct {
	Path     string
	Metadata map[string]string
	Layer    int
	Heads    int // query heads
	KVHeads  int
	T, D     int
	// Q[h] is [T][D] for query head h; K[g], V[g] are [T][D] for KV head g.
	Q, K, V []*tensor.Mat
	Scale   float32
}

// Group returns the number of query heads per KV head.
func (c *Capture) Group() int { return c.Heads / c.KVHeads }

// ReadCapture reads and validates a qkv-capture/1 file. Errors name the
// file and, where it applies, the tensor.
func ReadCapture(path string) (*Capture, error) {
	f, err := safetensors.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("capture: %w", err)
	}
	return captureFromFile(f)
}

func captureFromFile(f *safetensors.File) (*Capture, error) {
	name := f.Name
	if fm, ok := f.Metadata["format"]; ok && fm != CaptureFormat {
		return nil, fmt.Errorf("capture %s: format %q, want %q", name, fm, CaptureFormat)
	}
	shapes := map[string][]int{}
	for _, t := range []string{"q", "k", "v"} {
		info, ok := f.Info(t)
		if !ok {
			return nil, fmt.Errorf("capture %s: tensor %q is missing (want q [heads,T,d], k and v [kv_heads,T,d])", name, t)
		}
		if len(info.Shape) != 3 {
			return nil, fmt.Errorf("capture %s: tensor %q has shape %v, want rank 3 [heads, T, d]", name, t, info.Shape)
		}
		switch info.DType {
		case "F16", "BF16", "F32":
		default:
			return nil, fmt.Errorf("capture %s: tensor %q has dtype %s, want F16, BF16 or F32", name, t, info.DType)
		}
		shapes[t] = info.Shape
	}
	q, k, v := shapes["q"], shapes["k"], shapes["v"]
	if k[0] != v[0] || k[1] != v[1] || k[2] != v[2] {
		return nil, fmt.Errorf("capture %s: tensor \"v\" has shape %v, but \"k\" has %v", name, v, k)
	}
	if q[1] != k[1] || q[2] != k[2] {
		return nil, fmt.Errorf("capture %s: tensor \"q\" has shape %v, inconsistent with \"k\" %v (T and d must match)", name, q, k)
	}
	if k[0] == 0 || q[0]%k[0] != 0 {
		return nil, fmt.Errorf("capture %s: tensor \"q\" has %d heads, not a multiple of the %d KV heads of \"k\"", name, q[0], k[0])
	}
	if q[1] == 0 || q[2] == 0 {
		return nil, fmt.Errorf("capture %s: tensor \"q\" has empty shape %v", name, q)
	}
	c := &Capture{Path: name, Metadata: f.Metadata, Heads: q[0], KVHeads: k[0], T: q[1], D: q[2]}
	if g, ok := f.Metadata["gqa_group"]; ok {
		if n, err := strconv.Atoi(g); err != nil || n != c.Group() {
			return nil, fmt.Errorf("capture %s: metadata gqa_group=%q but shapes give %d query heads per KV head", name, g, c.Group())
		}
	}
	if n, ok := f.Metadata["n_tokens"]; ok {
		if v, err := strconv.Atoi(n); err != nil || v != c.T {
			return nil, fmt.Errorf("capture %s: metadata n_tokens=%q but tensors hold %d positions", name, n, c.T)
		}
	}
	if l, ok := f.Metadata["layer"]; ok {
		n, err := strconv.Atoi(l)
		if err != nil {
			return nil, fmt.Errorf("capture %s: metadata layer=%q is not an integer", name, l)
		}
		c.Layer = n
	} else {
		c.Layer = layerFromName(name)
	}
	scale, err := parseScale(f.Metadata["scale"], c.D)
	if err != nil {
		return nil, fmt.Errorf("capture %s: metadata scale: %w", name, err)
	}
	c.Scale = scale
	split := func(t string, heads int) ([]*tensor.Mat, error) {
		_, data, err := f.Float32(t)
		if err != nil {
			return nil, fmt.Errorf("capture: %w", err)
		}
		out := make([]*tensor.Mat, heads)
		per := c.T * c.D
		for h := range out {
			out[h] = &tensor.Mat{Rows: c.T, Cols: c.D, Data: data[h*per : (h+1)*per : (h+1)*per]}
		}
		return out, nil
	}
	if c.Q, err = split("q", c.Heads); err != nil {
		return nil, err
	}
	if c.K, err = split("k", c.KVHeads); err != nil {
		return nil, err
	}
	if c.V, err = split("v", c.KVHeads); err != nil {
		return nil, err
	}
	return c, nil
}

// layerFromName reads the layer from a "-L<n>" suffix of the file name, or
// returns 0.
func layerFromName(path string) int {
	base := strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	if i := strings.LastIndex(base, "-L"); i >= 0 {
		if n, err := strconv.Atoi(base[i+2:]); err == nil {
			return n
		}
	}
	return 0
}

func parseScale(s string, d int) (float32, error) {
	if s == "" {
		return float32(1 / math.Sqrt(float64(d))), nil
	}
	if inner, ok := strings.CutPrefix(s, "1/sqrt("); ok {
		inner, ok = strings.CutSuffix(inner, ")")
		n, err := strconv.ParseFloat(inner, 64)
		if !ok || err != nil || n <= 0 {
			return 0, fmt.Errorf("cannot parse %q", s)
		}
		return float32(1 / math.Sqrt(n)), nil
	}
	x, err := strconv.ParseFloat(s, 64)
	if err != nil || x <= 0 {
		return 0, fmt.Errorf("cannot parse %q", s)
	}
	return float32(x), nil
}

// Groups returns the capture's Groups, one per KV head.
func (c *Capture) Groups(workload string) []*attn.Group {
	item := strings.TrimSuffix(filepath.Base(c.Path), filepath.Ext(c.Path))
	var out []*attn.Group
	g := c.Group()
	for kv := 0; kv < c.KVHeads; kv++ {
		grp := &attn.Group{Workload: workload, Item: item, Layer: c.Layer, KVHead: kv, K: c.K[kv], V: c.V[kv], Scale: c.Scale}
		for h := kv * g; h < (kv+1)*g; h++ {
			grp.QHeads = append(grp.QHeads, h)
			grp.Q = append(grp.Q, c.Q[h])
		}
		out = append(out, grp)
	}
	return out
}

// Write writes the capture as a qkv-capture/1 file with the given dtype
// (F16, BF16 or F32), keeping its metadata.
func (c *Capture) Write(path, dtype string) error {
	join := func(ms []*tensor.Mat) []float32 {
		var out []float32
		for _, m := range ms {
			out = append(out, m.Data...)
		}
		return out
	}
	var ts []safetensors.Tensor
	for _, x := range []struct {
		name string
		ms   []*tensor.Mat
	}{{"q", c.Q}, {"k", c.K}, {"v", c.V}} {
		t, err := safetensors.F32Tensor(x.name, dtype, []int{len(x.ms), c.T, c.D}, join(x.ms))
		if err != nil {
			return err
		}
		ts = append(ts, t)
	}
	meta := map[string]string{}
	for k, v := range c.Metadata {
		meta[k] = v
	}
	meta["format"] = CaptureFormat
	meta["n_tokens"] = strconv.Itoa(c.T)
	meta["gqa_group"] = strconv.Itoa(c.Group())
	meta["layer"] = strconv.Itoa(c.Layer)
	return safetensors.WriteFile(path, ts, meta)
}

// Cut returns the first t positions of the capture, keeping only the KV
// heads listed (all when kvHeads is empty) with their query heads.
func (c *Capture) Cut(t int, kvHeads []int) (*Capture, error) {
	if t <= 0 || t > c.T {
		return nil, fmt.Errorf("cut %s: %d positions out of range 1..%d", c.Path, t, c.T)
	}
	if len(kvHeads) == 0 {
		for g := 0; g < c.KVHeads; g++ {
			kvHeads = append(kvHeads, g)
		}
	}
	out := &Capture{Path: c.Path, Metadata: map[string]string{}, Layer: c.Layer, T: t, D: c.D, Scale: c.Scale}
	for k, v := range c.Metadata {
		out.Metadata[k] = v
	}
	g := c.Group()
	var kept []string
	for _, kv := range kvHeads {
		if kv < 0 || kv >= c.KVHeads {
			return nil, fmt.Errorf("cut %s: KV head %d out of range 0..%d", c.Path, kv, c.KVHeads-1)
		}
		kept = append(kept, strconv.Itoa(kv))
		out.K = append(out.K, c.K[kv].Slice(0, t))
		out.V = append(out.V, c.V[kv].Slice(0, t))
		for h := kv * g; h < (kv+1)*g; h++ {
			out.Q = append(out.Q, c.Q[h].Slice(0, t))
		}
	}
	out.Heads, out.KVHeads = len(out.Q), len(out.K)
	out.Metadata["positions"] = fmt.Sprintf("0..%d", t-1)
	out.Metadata["cut"] = fmt.Sprintf("first %d positions, kv heads %s of %d", t, strings.Join(kept, ","), c.KVHeads)
	return out, nil
}

// CaptureParams configures the capture workload.
type CaptureParams struct {
	Files  []string `yaml:"files" doc:"capture files or globs, relative to the YAML file"`
	Layers []int    `yaml:"layers" doc:"keep only these layers (default: all files)"`
	Tokens int      `yaml:"tokens" doc:"use only the first N positions of each file (0: all)"`
}

// Validate implements the parameter check.
func (p *CaptureParams) Validate() error {
	var errs []error
	if len(p.Files) == 0 {
		errs = append(errs, errors.New("files: give at least one file or glob"))
	}
	if p.Tokens < 0 {
		errs = append(errs, fmt.Errorf("tokens: must be >= 0, got %d", p.Tokens))
	}
	return errors.Join(errs...)
}

type captureWorkload struct {
	paths []string
	p     CaptureParams
}

func init() {
	Register(Spec{
		Name:     "capture",
		Doc:      "real Q/K/V read from qkv-capture/1 safetensors files",
		Defaults: func() any { return &CaptureParams{} },
		New: func(p any, env Env) (Workload, error) {
			cp := p.(*CaptureParams)
			paths, err := ResolveGlobs(env.Dir, cp.Files)
			if err != nil {
				return nil, err
			}
			return &captureWorkload{paths: paths, p: *cp}, nil
		},
	})
}

// ResolveGlobs expands globs relative to dir; a pattern matching nothing is
// an error naming it.
func ResolveGlobs(dir string, patterns []string) ([]string, error) {
	var out []string
	for _, pat := range patterns {
		if !filepath.IsAbs(pat) {
			pat = filepath.Join(dir, pat)
		}
		m, err := filepath.Glob(pat)
		if err != nil {
			return nil, fmt.Errorf("bad glob %q: %w", pat, err)
		}
		if len(m) == 0 {
			return nil, fmt.Errorf("no file matches %q", pat)
		}
		sort.Strings(m)
		out = append(out, m...)
	}
	return out, nil
}

func (w *captureWorkload) Groups() ([]*attn.Group, error) {
	var out []*attn.Group
	for _, path := range w.paths {
		c, err := ReadCapture(path)
		if err != nil {
			return nil, err
		}
		if len(w.p.Layers) > 0 && !slices.Contains(w.p.Layers, c.Layer) {
			continue
		}
		if w.p.Tokens > 0 && w.p.Tokens < c.T {
			if c, err = c.Cut(w.p.Tokens, nil); err != nil {
				return nil, err
			}
		}
		out = append(out, c.Groups("")...)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("capture files %v hold none of layers %v", w.paths, w.p.Layers)
	}
	return out, nil
}
