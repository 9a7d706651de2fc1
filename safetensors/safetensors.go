// Package safetensors reads and writes the safetensors container format
// (an 8-byte little-endian header length, a JSON header, then raw tensor
// bytes), defensively: every shape, offset and length in a header is checked
// against the file before any allocation, so a hostile or truncated file
// yields an error naming the tensor, never a panic or a huge allocation.
//
// hbench uses it for qkv-capture/1 files (workloads) and HashAttention
// weight files (methods).
package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"sort"

	"github.com/hbench/hbench/tensor"
)

// MaxHeaderBytes bounds the JSON header; real headers are a few KB.
const MaxHeaderBytes = 100 << 20

// DTypeSize returns the size in bytes of one element of a safetensors dtype
// name, or 0 for a dtype this package does not know.
func DTypeSize(dtype string) int {
	switch dtype {
	case "F64", "I64", "U64":
		return 8
	case "F32", "I32", "U32":
		return 4
	case "F16", "BF16", "I16", "U16":
		return 2
	case "I8", "U8", "BOOL":
		return 1
	}
	return 0
}

// Info describes one tensor of a file.
type Info struct {
	Name  string
	DType string
	Shape []int
	// Begin and End are byte offsets into the data section.
	Begin, End int64
}

// NumElements returns the product of the shape (1 for a scalar).
func (i Info) NumElements() int {
	n := 1
	for _, d := range i.Shape {
		n *= d
	}
	return n
}

// File is a parsed safetensors file held in memory.
type File struct {
	// Name is used in error messages (usually the path).
	Name     string
	Metadata map[string]string
	// Tensors are sorted by Begin offset.
	Tensors []Info
	data    []byte
}

type headerEntry struct {
	DType       string  `json:"dtype"`
	Shape       []int64 `json:"shape"`
	DataOffsets []int64 `json:"data_offsets"`
}

// ReadFile reads and validates the file at path.
func ReadFile(path string) (*File, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, b)
}

// Parse validates buf as a safetensors file; name labels errors. The File
// keeps a reference to buf.
func Parse(name string, buf []byte) (*File, error) {
	if len(buf) < 8 {
		return nil, fmt.Errorf("%s: file is %d bytes, too short for the 8-byte header length", name, len(buf))
	}
	hlen := binary.LittleEndian.Uint64(buf[:8])
	if hlen > MaxHeaderBytes {
		return nil, fmt.Errorf("%s: header length %d exceeds the %d-byte limit", name, hlen, MaxHeaderBytes)
	}
	if hlen > uint64(len(buf)-8) {
		return nil, fmt.Errorf("%s: header length %d runs past the end of the %d-byte file (truncated?)", name, hlen, len(buf))
	}
	hdr := buf[8 : 8+hlen]
	data := buf[8+hlen:]
	var raw map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(hdr))
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("%s: header is not a JSON object: %w", name, err)
	}
	f := &File{Name: name, data: data, Metadata: map[string]string{}}
	for key, msg := range raw {
		if key == "__metadata__" {
			if err := json.Unmarshal(msg, &f.Metadata); err != nil {
				return nil, fmt.Errorf("%s: __metadata__ must map strings to strings: %w", name, err)
			}
			continue
		}
		var e headerEntry
		d := json.NewDecoder(bytes.NewReader(msg))
		d.DisallowUnknownFields()
		if err := d.Decode(&e); err != nil {
			return nil, fmt.Errorf("%s: tensor %q: bad header entry: %w", name, key, err)
		}
		info, err := checkEntry(key, e, int64(len(data)))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		f.Tensors = append(f.Tensors, info)
	}
	sort.Slice(f.Tensors, func(i, j int) bool {
		if f.Tensors[i].Begin != f.Tensors[j].Begin {
			return f.Tensors[i].Begin < f.Tensors[j].Begin
		}
		return f.Tensors[i].Name < f.Tensors[j].Name
	})
	for i := 1; i < len(f.Tensors); i++ {
		a, b := f.Tensors[i-1], f.Tensors[i]
		if b.Begin < a.End {
			return nil, fmt.Errorf("%s: tensors %q [%d,%d) and %q [%d,%d) overlap", name, a.Name, a.Begin, a.End, b.Name, b.Begin, b.End)
		}
	}
	return f, nil
}

func checkEntry(name string, e headerEntry, dataLen int64) (Info, error) {
	size := DTypeSize(e.DType)
	if size == 0 {
		return Info{}, fmt.Errorf("tensor %q: unknown dtype %q", name, e.DType)
	}
	if len(e.DataOffsets) != 2 {
		return Info{}, fmt.Errorf("tensor %q: data_offsets must have 2 entries, has %d", name, len(e.DataOffsets))
	}
	if len(e.Shape) > 8 {
		return Info{}, fmt.Errorf("tensor %q: rank %d is over 8", name, len(e.Shape))
	}
	elems := int64(1)
	shape := make([]int, len(e.Shape))
	for i, d := range e.Shape {
		if d < 0 {
			return Info{}, fmt.Errorf("tensor %q: negative dimension %d", name, d)
		}
		if d > 0 && elems > math.MaxInt64/int64(size)/d {
			return Info{}, fmt.Errorf("tensor %q: shape %v overflows", name, e.Shape)
		}
		elems *= d
		shape[i] = int(d)
	}
	begin, end := e.DataOffsets[0], e.DataOffsets[1]
	if begin < 0 || end < begin {
		return Info{}, fmt.Errorf("tensor %q: bad data_offsets [%d, %d]", name, begin, end)
	}
	if end > dataLen {
		return Info{}, fmt.Errorf("tensor %q: data [%d, %d) runs past the %d data bytes of the file (truncated?)", name, begin, end, dataLen)
	}
	if want := elems * int64(size); end-begin != want {
		return Info{}, fmt.Errorf("tensor %q: shape %v of %s needs %d bytes, data_offsets give %d", name, e.Shape, e.DType, want, end-begin)
	}
	return Info{Name: name, DType: e.DType, Shape: shape, Begin: begin, End: end}, nil
}

// Info returns the description of the named tensor.
func (f *File) Info(name string) (Info, bool) {
	for _, t := range f.Tensors {
		if t.Name == name {
			return t, true
		}
	}
	return Info{}, false
}

// Bytes returns the raw little-endian bytes of the named tensor.
func (f *File) Bytes(name string) ([]byte, error) {
	t, ok := f.Info(name)
	if !ok {
		return nil, fmt.Errorf("%s: no tensor %q", f.Name, name)
	}
	return f.data[t.Begin:t.End], nil
}

// Float32 decodes a floating-point tensor (F16, BF16, F32 or F64) to float32.
func (f *File) Float32(name string) (Info, []float32, error) {
	t, ok := f.Info(name)
	if !ok {
		return Info{}, nil, fmt.Errorf("%s: no tensor %q", f.Name, name)
	}
	b := f.data[t.Begin:t.End]
	n := t.NumElements()
	out := make([]float32, n)
	switch t.DType {
	case "F16":
		for i := range out {
			out[i] = tensor.F16ToF32(binary.LittleEndian.Uint16(b[2*i:]))
		}
	case "BF16":
		for i := range out {
			out[i] = tensor.BF16ToF32(binary.LittleEndian.Uint16(b[2*i:]))
		}
	case "F32":
		for i := range out {
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
		}
	case "F64":
		for i := range out {
			out[i] = float32(math.Float64frombits(binary.LittleEndian.Uint64(b[8*i:])))
		}
	default:
		return Info{}, nil, fmt.Errorf("%s: tensor %q has dtype %s, want a float type (F16, BF16, F32, F64)", f.Name, name, t.DType)
	}
	return t, out, nil
}

// Tensor is one tensor to write.
type Tensor struct {
	Name  string
	DType string
	Shape []int
	// Data holds the raw little-endian bytes; its length must match
	// Shape and DType.
	Data []byte
}

// F32Tensor encodes float32 values as a tensor of the given float dtype
// (F16, BF16 or F32).
func F32Tensor(name, dtype string, shape []int, vals []float32) (Tensor, error) {
	size := DTypeSize(dtype)
	b := make([]byte, len(vals)*size)
	switch dtype {
	case "F16":
		for i, v := range vals {
			binary.LittleEndian.PutUint16(b[2*i:], tensor.F32ToF16(v))
		}
	case "BF16":
		for i, v := range vals {
			binary.LittleEndian.PutUint16(b[2*i:], tensor.F32ToBF16(v))
		}
	case "F32":
		for i, v := range vals {
			binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
		}
	default:
		return Tensor{}, fmt.Errorf("safetensors: cannot encode float32 as %q", dtype)
	}
	return Tensor{Name: name, DType: dtype, Shape: shape, Data: b}, nil
}

// Write writes tensors (in the given order) and metadata as a safetensors
// file. The header is padded with spaces to a multiple of 8 bytes.
func Write(w io.Writer, tensors []Tensor, metadata map[string]string) error {
	hdr := map[string]any{}
	if len(metadata) > 0 {
		hdr["__metadata__"] = metadata
	}
	var off int64
	for _, t := range tensors {
		if _, dup := hdr[t.Name]; dup || t.Name == "__metadata__" {
			return fmt.Errorf("safetensors: duplicate or reserved tensor name %q", t.Name)
		}
		n := int64(DTypeSize(t.DType))
		if n == 0 {
			return fmt.Errorf("safetensors: tensor %q: unknown dtype %q", t.Name, t.DType)
		}
		for _, d := range t.Shape {
			n *= int64(d)
		}
		if n != int64(len(t.Data)) {
			return fmt.Errorf("safetensors: tensor %q: shape %v of %s needs %d bytes, have %d", t.Name, t.Shape, t.DType, n, len(t.Data))
		}
		shape := t.Shape
		if shape == nil {
			shape = []int{}
		}
		hdr[t.Name] = map[string]any{"dtype": t.DType, "shape": shape, "data_offsets": []int64{off, off + n}}
		off += n
	}
	js, err := json.Marshal(hdr)
	if err != nil {
		return err
	}
	for len(js)%8 != 0 {
		js = append(js, ' ')
	}
	var lenb [8]byte
	binary.LittleEndian.PutUint64(lenb[:], uint64(len(js)))
	if _, err := w.Write(lenb[:]); err != nil {
		return err
	}
	if _, err := w.Write(js); err != nil {
		return err
	}
	for _, t := range tensors {
		if _, err := w.Write(t.Data); err != nil {
			return err
		}
	}
	return nil
}

// WriteFile writes a safetensors file atomically: to a temporary file in
// the same directory, then renamed over path, so a reader never sees a
// partial file.
func WriteFile(path string, tensors []Tensor, metadata map[string]string) error {
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	err = Write(f, tensors, metadata)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
