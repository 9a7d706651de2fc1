package workloads

import (
	"bytes"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hbench/hbench/safetensors"
	"github.com/hbench/hbench/tensor"
)

const sample = "../testdata/persuasion/persuasion-L4.safetensors"

func TestReadShippedSample(t *testing.T) {
	c, err := ReadCapture(sample)
	if err != nil {
		t.Fatal(err)
	}
	if c.Layer != 4 || c.Heads != 2 || c.KVHeads != 1 || c.T != 2048 || c.D != 128 || c.Group() != 2 {
		t.Fatalf("capture %+v", c)
	}
	if c.Scale < 0.0883 || c.Scale > 0.0884 {
		t.Fatalf("scale %g, want 1/sqrt(128)", c.Scale)
	}
	gs := c.Groups("w")
	if len(gs) != 1 || len(gs[0].Q) != 2 || gs[0].QHeads[1] != 1 || gs[0].Validate() != nil {
		t.Fatalf("groups %+v", gs)
	}
	// The shared dev capture, when present, agrees bit for bit.
	full, err := ReadCapture("../../shared/data/qkv/persuasion-L4.safetensors")
	if err != nil {
		t.Skipf("shared capture not available: %v", err)
	}
	for i, x := range c.Q[1].Data {
		if full.Q[1].Data[i] != x {
			t.Fatalf("q head 1 differs from the shared capture at %d", i)
		}
	}
}

func randCapture(rng *rand.Rand, heads, kv, T, d int) *Capture {
	mk := func(n int) []*tensor.Mat {
		var out []*tensor.Mat
		for i := 0; i < n; i++ {
			m := tensor.NewMat(T, d)
			for j := range m.Data {
				m.Data[j] = float32(rng.NormFloat64())
			}
			out = append(out, m)
		}
		return out
	}
	return &Capture{Path: "x", Metadata: map[string]string{"model": "rand"}, Layer: 3, Heads: heads, KVHeads: kv, T: T, D: d, Q: mk(heads), K: mk(kv), V: mk(kv), Scale: 0.125}
}

func TestCaptureRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	dir := t.TempDir()
	for _, dt := range []string{"F16", "BF16", "F32"} {
		c := randCapture(rng, 4, 2, 37, 8)
		c.Metadata["scale"] = "0.125"
		p := filepath.Join(dir, "x-"+dt+".safetensors")
		if err := c.Write(p, dt); err != nil {
			t.Fatal(err)
		}
		got, err := ReadCapture(p)
		if err != nil {
			t.Fatal(err)
		}
		if got.Heads != 4 || got.KVHeads != 2 || got.T != 37 || got.D != 8 || got.Layer != 3 || got.Scale != 0.125 {
			t.Fatalf("%s: header %+v", dt, got)
		}
		tol := map[string]float64{"F16": 1e-3, "BF16": 8e-3, "F32": 0}[dt]
		for h := range c.K {
			for i, x := range c.K[h].Data {
				y := got.K[h].Data[i]
				if d := float64(x - y); d > tol*(1+math.Abs(float64(x))) || -d > tol*(1+math.Abs(float64(x))) {
					t.Fatalf("%s: k[%d][%d] %g -> %g", dt, h, i, x, y)
				}
			}
		}
		// Cut keeps exact values.
		cut, err := got.Cut(10, []int{1})
		if err != nil || cut.Heads != 2 || cut.KVHeads != 1 || cut.T != 10 || cut.Q[0].Data[5] != got.Q[2].Data[5] {
			t.Fatalf("cut %+v %v", cut, err)
		}
	}
}

// writeRaw writes a safetensors file with the given tensors.
func writeRaw(t *testing.T, ts []safetensors.Tensor, meta map[string]string) []byte {
	var b bytes.Buffer
	if err := safetensors.Write(&b, ts, meta); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func zeros(name, dt string, shape ...int) safetensors.Tensor {
	n := safetensors.DTypeSize(dt)
	for _, s := range shape {
		n *= s
	}
	return safetensors.Tensor{Name: name, DType: dt, Shape: shape, Data: make([]byte, n)}
}

func TestCaptureRejects(t *testing.T) {
	good := writeRaw(t, []safetensors.Tensor{zeros("q", "F16", 4, 8, 4), zeros("k", "F16", 2, 8, 4), zeros("v", "F16", 2, 8, 4)}, map[string]string{"format": CaptureFormat})
	cases := []struct {
		name string
		data []byte
		want string
	}{
		{"truncated data", good[:len(good)-10], `tensor "v": data`},
		{"truncated header", good[:20], "runs past the end"},
		{"tiny", good[:3], "too short"},
		{"missing v", writeRaw(t, []safetensors.Tensor{zeros("q", "F16", 4, 8, 4), zeros("k", "F16", 2, 8, 4)}, nil), `tensor "v" is missing`},
		{"rank 2", writeRaw(t, []safetensors.Tensor{zeros("q", "F16", 32, 4), zeros("k", "F16", 2, 8, 4), zeros("v", "F16", 2, 8, 4)}, nil), `tensor "q" has shape [32 4], want rank 3`},
		{"k v mismatch", writeRaw(t, []safetensors.Tensor{zeros("q", "F16", 4, 8, 4), zeros("k", "F16", 2, 8, 4), zeros("v", "F16", 2, 7, 4)}, nil), `tensor "v" has shape [2 7 4], but "k" has [2 8 4]`},
		{"T mismatch", writeRaw(t, []safetensors.Tensor{zeros("q", "F16", 4, 9, 4), zeros("k", "F16", 2, 8, 4), zeros("v", "F16", 2, 8, 4)}, nil), `tensor "q" has shape [4 9 4], inconsistent`},
		{"heads not multiple", writeRaw(t, []safetensors.Tensor{zeros("q", "F16", 3, 8, 4), zeros("k", "F16", 2, 8, 4), zeros("v", "F16", 2, 8, 4)}, nil), "not a multiple"},
		{"wrong dtype", writeRaw(t, []safetensors.Tensor{zeros("q", "I32", 4, 8, 4), zeros("k", "F16", 2, 8, 4), zeros("v", "F16", 2, 8, 4)}, nil), `tensor "q" has dtype I32`},
		{"wrong format", writeRaw(t, []safetensors.Tensor{zeros("q", "F16", 4, 8, 4), zeros("k", "F16", 2, 8, 4), zeros("v", "F16", 2, 8, 4)}, map[string]string{"format": "other"}), `format "other"`},
		{"gqa metadata", writeRaw(t, []safetensors.Tensor{zeros("q", "F16", 4, 8, 4), zeros("k", "F16", 2, 8, 4), zeros("v", "F16", 2, 8, 4)}, map[string]string{"gqa_group": "4"}), "gqa_group"},
	}
	dir := t.TempDir()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "_")+".safetensors")
			os.WriteFile(p, c.data, 0o644)
			_, err := ReadCapture(p)
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), p) {
				t.Fatalf("error %q, want it to name the file and contain %q", err, c.want)
			}
		})
	}
	if _, err := ReadCapture(filepath.Join(dir, "truncated_data.safetensors")); err == nil {
		t.Fatal("re-read accepted")
	}
}

// hostileHeader builds a file with a hand-written JSON header.
func hostileHeader(hdr string, data int) []byte {
	var b bytes.Buffer
	binary.Write(&b, binary.LittleEndian, uint64(len(hdr)))
	b.WriteString(hdr)
	b.Write(make([]byte, data))
	return b.Bytes()
}

func FuzzReadCapture(f *testing.F) {
	rng := rand.New(rand.NewPCG(5, 5))
	c := randCapture(rng, 2, 1, 3, 4)
	var buf bytes.Buffer
	for _, dt := range []string{"F16", "F32"} {
		buf.Reset()
		var ts []safetensors.Tensor
		for _, x := range []struct {
			n  string
			ms []*tensor.Mat
		}{{"q", c.Q}, {"k", c.K}, {"v", c.V}} {
			var vals []float32
			for _, m := range x.ms {
				vals = append(vals, m.Data...)
			}
			tt, _ := safetensors.F32Tensor(x.n, dt, []int{len(x.ms), 3, 4}, vals)
			ts = append(ts, tt)
		}
		safetensors.Write(&buf, ts, map[string]string{"format": CaptureFormat})
		f.Add(append([]byte(nil), buf.Bytes()...))
	}
	f.Add(hostileHeader(`{"q":{"dtype":"F16","shape":[1000000000,1000000000,1000000000],"data_offsets":[0,8]}}`, 8))
	f.Add(hostileHeader(`{"q":{"dtype":"F16","shape":[2,2,2],"data_offsets":[0,16]},"k":{"dtype":"F16","shape":[1,2,2],"data_offsets":[8,16]},"v":{"dtype":"F16","shape":[1,2,2],"data_offsets":[16,24]}}`, 24))
	f.Add(hostileHeader(`{"q":{"dtype":"F16","shape":[1,1,1],"data_offsets":[0,99999999999]}}`, 2))
	f.Add(hostileHeader(`{"q":{"dtype":"F16","shape":[-1,2,2],"data_offsets":[0,2]}}`, 2))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, '{', '}'})
	f.Fuzz(func(t *testing.T, data []byte) {
		sf, err := safetensors.Parse("fuzz", data)
		if err != nil {
			return
		}
		// Allocation stays bounded by the input: every accepted tensor's
		// bytes lie inside the file.
		var total int64
		for _, ti := range sf.Tensors {
			total += ti.End - ti.Begin
		}
		if total > int64(len(data)) {
			t.Fatalf("tensors claim %d bytes of a %d-byte file", total, len(data))
		}
		if c, err := captureFromFile(sf); err == nil {
			if c.T <= 0 || c.D <= 0 || len(c.Q) != c.Heads || c.Heads%c.KVHeads != 0 {
				t.Fatalf("accepted inconsistent capture %+v", c)
			}
			c.Groups("fuzz")
		}
	})
}
