package methods

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/hbench/hbench/safetensors"
	"github.com/hbench/hbench/tensor"
)

// HashWeightsFormat tags HashAttention weight files.
const HashWeightsFormat = "hashattention-weights/1"

// MLP is a small fully connected network: hidden layers apply Activation,
// the last layer is linear (its sign gives the hash bits).
type MLP struct {
	// W[i] is [out][in] and B[i] has out entries, for layer i.
	W []*tensor.Mat
	B [][]float32
}

// In returns the input width, Out the output width (bits).
func (m *MLP) In() int  { return m.W[0].Cols }
func (m *MLP) Out() int { return m.W[len(m.W)-1].Rows }

// HeadMaps are the learned query and key maps of one (layer, query head).
type HeadMaps struct {
	Q, K *MLP
}

// HashWeights holds HashAttention's learned maps for some layers and query
// heads of one model.
//
// File format (hashattention-weights/1): a safetensors file with, for each
// mapped (layer L, query head H), tensors "L{L}.H{H}.{q|k}.{i}.weight"
// [out, in] and "L{L}.H{H}.{q|k}.{i}.bias" [out] for MLP layer i = 0, 1, ...
// (F32). Metadata (all strings): format, bits, dim (input width, the head
// dimension), activation ("silu", "relu", "tanh" or "identity"), hidden
// (comma-separated hidden widths, empty for a linear map), model (free
// text), and optionally training (JSON: config, data provenance, validation
// figures).
type HashWeights struct {
	Bits       int
	Dim        int
	Activation string
	Hidden     []int
	// Maps is keyed by [2]int{layer, queryHead}.
	Maps     map[[2]int]*HeadMaps
	Metadata map[string]string
}

// Activate applies the named activation in place.
func Activate(name string, x []float32) {
	switch name {
	case "silu":
		for i, v := range x {
			x[i] = v / (1 + exp32(-v))
		}
	case "relu":
		for i, v := range x {
			x[i] = max(v, 0)
		}
	case "tanh":
		for i, v := range x {
			x[i] = tanh32(v)
		}
	}
}

// Forward applies the MLP to x, using buf as scratch, and returns the
// output (which aliases buf).
func (m *MLP) Forward(x []float32, act string, buf [2][]float32) []float32 {
	in := x
	for l, w := range m.W {
		out := buf[l%2][:0]
		for r := 0; r < w.Rows; r++ {
			out = append(out, tensor.Dot32(w.Row(r), in)+m.B[l][r])
		}
		if l < len(m.W)-1 {
			Activate(act, out)
		}
		buf[l%2] = out
		in = out
	}
	return in
}

// Code packs the signs of the MLP output into bits (bit i set when output
// i is > 0), in words of 64 bits.
func (m *MLP) Code(x []float32, act string, buf [2][]float32, dst []uint64) []uint64 {
	y := m.Forward(x, act, buf)
	dst = dst[:0]
	for i := 0; i < len(y); i += 64 {
		var w uint64
		for b := 0; b < 64 && i+b < len(y); b++ {
			if y[i+b] > 0 {
				w |= 1 << b
			}
		}
		dst = append(dst, w)
	}
	return dst
}

// Validate checks that every map has the declared shape.
func (w *HashWeights) Validate() error {
	if w.Bits <= 0 || w.Dim <= 0 {
		return fmt.Errorf("hash weights: bits %d and dim %d must be > 0", w.Bits, w.Dim)
	}
	switch w.Activation {
	case "silu", "relu", "tanh", "identity":
	default:
		return fmt.Errorf("hash weights: unknown activation %q", w.Activation)
	}
	widths := append(append([]int{w.Dim}, w.Hidden...), w.Bits)
	for key, hm := range w.Maps {
		for side, m := range map[string]*MLP{"q": hm.Q, "k": hm.K} {
			if m == nil || len(m.W) != len(widths)-1 || len(m.B) != len(m.W) {
				return fmt.Errorf("hash weights: layer %d head %d %s map: want %d layers", key[0], key[1], side, len(widths)-1)
			}
			for i, mat := range m.W {
				if mat.Cols != widths[i] || mat.Rows != widths[i+1] || len(m.B[i]) != widths[i+1] {
					return fmt.Errorf("hash weights: layer %d head %d %s.%d: weight %dx%d bias %d, want %dx%d", key[0], key[1], side, i, mat.Rows, mat.Cols, len(m.B[i]), widths[i+1], widths[i])
				}
			}
		}
	}
	return nil
}

// Save writes the weights as a hashattention-weights/1 file (atomically).
func (w *HashWeights) Save(path string) error {
	if err := w.Validate(); err != nil {
		return err
	}
	meta := map[string]string{}
	for k, v := range w.Metadata {
		meta[k] = v
	}
	hid := make([]string, len(w.Hidden))
	for i, h := range w.Hidden {
		hid[i] = strconv.Itoa(h)
	}
	meta["format"] = HashWeightsFormat
	meta["bits"] = strconv.Itoa(w.Bits)
	meta["dim"] = strconv.Itoa(w.Dim)
	meta["activation"] = w.Activation
	meta["hidden"] = strings.Join(hid, ",")
	keys := make([][2]int, 0, len(w.Maps))
	for k := range w.Maps {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		return keys[i][0] < keys[j][0] || keys[i][0] == keys[j][0] && keys[i][1] < keys[j][1]
	})
	var ts []safetensors.Tensor
	for _, k := range keys {
		for _, side := range []string{"q", "k"} {
			m := w.Maps[k].Q
			if side == "k" {
				m = w.Maps[k].K
			}
			for i := range m.W {
				name := fmt.Sprintf("L%d.H%d.%s.%d", k[0], k[1], side, i)
				wt, _ := safetensors.F32Tensor(name+".weight", "F32", []int{m.W[i].Rows, m.W[i].Cols}, m.W[i].Data)
				bt, _ := safetensors.F32Tensor(name+".bias", "F32", []int{len(m.B[i])}, m.B[i])
				ts = append(ts, wt, bt)
			}
		}
	}
	return safetensors.WriteFile(path, ts, meta)
}

// LoadHashWeights reads a hashattention-weights/1 file.
func LoadHashWeights(path string) (*HashWeights, error) {
	f, err := safetensors.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("hash weights: %w", err)
	}
	md := f.Metadata
	if md["format"] != HashWeightsFormat {
		return nil, fmt.Errorf("hash weights %s: format %q, want %q", path, md["format"], HashWeightsFormat)
	}
	w := &HashWeights{Activation: md["activation"], Maps: map[[2]int]*HeadMaps{}, Metadata: md}
	var errs []error
	if w.Bits, err = strconv.Atoi(md["bits"]); err != nil {
		errs = append(errs, fmt.Errorf("metadata bits=%q", md["bits"]))
	}
	if w.Dim, err = strconv.Atoi(md["dim"]); err != nil {
		errs = append(errs, fmt.Errorf("metadata dim=%q", md["dim"]))
	}
	if h := md["hidden"]; h != "" {
		for _, s := range strings.Split(h, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(s))
			if err != nil {
				errs = append(errs, fmt.Errorf("metadata hidden=%q", h))
				break
			}
			w.Hidden = append(w.Hidden, n)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("hash weights %s: %w", path, err)
	}
	nl := len(w.Hidden) + 1
	for _, t := range f.Tensors {
		var l, h, i int
		var side, kind string
		name := strings.NewReplacer(".", " ").Replace(t.Name)
		if _, err := fmt.Sscanf(name, "L%d H%d %s %d %s", &l, &h, &side, &i, &kind); err != nil || (side != "q" && side != "k") || i < 0 || i >= nl || (kind != "weight" && kind != "bias") {
			return nil, fmt.Errorf("hash weights %s: unexpected tensor %q", path, t.Name)
		}
		key := [2]int{l, h}
		hm := w.Maps[key]
		if hm == nil {
			hm = &HeadMaps{Q: &MLP{W: make([]*tensor.Mat, nl), B: make([][]float32, nl)}, K: &MLP{W: make([]*tensor.Mat, nl), B: make([][]float32, nl)}}
			w.Maps[key] = hm
		}
		m := hm.Q
		if side == "k" {
			m = hm.K
		}
		_, data, err := f.Float32(t.Name)
		if err != nil {
			return nil, fmt.Errorf("hash weights: %w", err)
		}
		if kind == "weight" {
			if len(t.Shape) != 2 {
				return nil, fmt.Errorf("hash weights %s: tensor %q has shape %v, want [out, in]", path, t.Name, t.Shape)
			}
			m.W[i] = &tensor.Mat{Rows: t.Shape[0], Cols: t.Shape[1], Data: data}
		} else {
			m.B[i] = data
		}
	}
	for key, hm := range w.Maps {
		for _, m := range []*MLP{hm.Q, hm.K} {
			for i := range m.W {
				if m.W[i] == nil || m.B[i] == nil {
					return nil, fmt.Errorf("hash weights %s: layer %d head %d is missing MLP layer %d", path, key[0], key[1], i)
				}
			}
		}
	}
	if err := w.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return w, nil
}
