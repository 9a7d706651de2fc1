package safetensors

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"
)

func TestWriteParseRoundTrip(t *testing.T) {
	a, _ := F32Tensor("a", "F32", []int{2, 3}, []float32{1, 2, 3, 4, 5, 6})
	b, _ := F32Tensor("b", "F16", []int{2}, []float32{0.5, -2})
	c, _ := F32Tensor("c", "BF16", []int{1}, []float32{3})
	var buf bytes.Buffer
	if err := Write(&buf, []Tensor{a, b, c}, map[string]string{"k": "v"}); err != nil {
		t.Fatal(err)
	}
	if hl := binary.LittleEndian.Uint64(buf.Bytes()); hl%8 != 0 {
		t.Fatalf("header length %d not padded to 8", hl)
	}
	f, err := Parse("mem", buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if f.Metadata["k"] != "v" || len(f.Tensors) != 3 || f.Tensors[0].Name != "a" {
		t.Fatalf("parsed %+v", f)
	}
	for name, want := range map[string][]float32{"a": {1, 2, 3, 4, 5, 6}, "b": {0.5, -2}, "c": {3}} {
		_, got, err := f.Float32(name)
		if err != nil || len(got) != len(want) {
			t.Fatalf("%s: %v %v", name, got, err)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("%s[%d] = %g, want %g", name, i, got[i], want[i])
			}
		}
	}
	if _, _, err := f.Float32("zz"); err == nil {
		t.Fatal("missing tensor found")
	}
}

func raw(hdr string, data int) []byte {
	var b bytes.Buffer
	binary.Write(&b, binary.LittleEndian, uint64(len(hdr)))
	b.WriteString(hdr)
	b.Write(make([]byte, data))
	return b.Bytes()
}

func TestParseRejects(t *testing.T) {
	cases := []struct{ name, hdr, want string }{
		{"overlap", `{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}`, "overlap"},
		{"past end", `{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}`, "runs past"},
		{"length mismatch", `{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}`, "needs 12 bytes"},
		{"huge shape", `{"a":{"dtype":"F16","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,8]}}`, "overflows"},
		{"unknown dtype", `{"a":{"dtype":"F8","shape":[1],"data_offsets":[0,1]}}`, "unknown dtype"},
		{"unknown field", `{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":1}}`, "bad header entry"},
		{"negative", `{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}`, "negative"},
		{"not json", `[1,2]`, "not a JSON object"},
	}
	for _, c := range cases {
		if _, err := Parse("f", raw(c.hdr, 12)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want %q", c.name, err, c.want)
		}
	}
}
