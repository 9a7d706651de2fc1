package gpu

import (
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"unsafe"

	"github.com/hbench/hbench/resultfmt"
)

// Compiled is a CUBIN compiled by NVRTC.
type Compiled struct {
	Name    string   // source name
	Arch    string   // e.g. "sm_90"
	Options []string // NVRTC options, defines included
	Key     string   // cache key (hex)
	CUBIN   []byte
	Log     string // compiler log (warnings), empty when cached
	Cached  bool   // read from the disk cache
}

// CacheDir returns the CUBIN cache directory: $HBENCH_CUBIN_CACHE, else
// os.UserCacheDir()/hbench/cubin.
func CacheDir() string {
	if d := os.Getenv("HBENCH_CUBIN_CACHE"); d != "" {
		return d
	}
	d, err := os.UserCacheDir()
	if err != nil {
		d = os.TempDir()
	}
	return filepath.Join(d, "hbench", "cubin")
}

// Defines renders -D options in sorted order.
func Defines(defs map[string]string) []string {
	keys := make([]string, 0, len(defs))
	for k := range defs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	opts := make([]string, len(keys))
	for i, k := range keys {
		opts[i] = "-D" + k + "=" + defs[k]
	}
	return opts
}

// Compile compiles CUDA C++ source src (named name) for arch (e.g.
// "sm_90") with the given defines, through the disk cache. Only NVRTC is
// needed, not a device: a test compiles for sm_80 on a Hopper machine.
//
// Every source is compiled after the shared prelude kernels/common.cu
// (16-bit K/V conversions, programmatic-dependent-launch helpers).
func Compile(name, src, arch string, defs map[string]string) (*Compiled, error) {
	if err := loadNVRTC(); err != nil {
		return nil, err
	}
	src = withPrelude(name, src)
	opts := append([]string{"--gpu-architecture=" + arch, "-std=c++17", "-default-device"}, Defines(defs)...)
	h := sha256.New()
	fmt.Fprintf(h, "hbench-cubin/1\x00%s\x00%s\x00nvrtc %d.%d\x00", arch, strings.Join(opts, "\x00"), nvrtc.major, nvrtc.minor)
	h.Write([]byte(src))
	key := hex.EncodeToString(h.Sum(nil))[:32]
	c := &Compiled{Name: name, Arch: arch, Options: opts, Key: key}
	path := filepath.Join(CacheDir(), fmt.Sprintf("%s-%s-%s.cubin", strings.TrimSuffix(name, ".cu"), arch, key))
	if b, err := os.ReadFile(path); err == nil && len(b) > 0 {
		c.CUBIN, c.Cached = b, true
		return c, nil
	}
	if err := compileNVRTC(c, src); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err == nil {
		resultfmt.WriteFileAtomic(path, c.CUBIN) // a failed cache write only costs a recompile
	}
	return c, nil
}

//go:embed kernels/common.cu
var commonSrc string

// withPrelude puts the prelude before src, with a #line directive so that
// compiler messages name src's own lines.
func withPrelude(name, src string) string {
	return commonSrc + "\n#line 1 \"" + name + "\"\n" + src
}

func compileNVRTC(c *Compiled, src string) error {
	var prog uintptr
	if err := nvrtcError("nvrtcCreateProgram", nvrtc.CreateProgram(&prog, src, c.Name, 0, 0, 0)); err != nil {
		return fmt.Errorf("compile %s: %w", c.Name, err)
	}
	defer nvrtc.DestroyProgram(&prog)
	cstrs := make([][]byte, len(c.Options))
	ptrs := make([]*byte, len(c.Options))
	for i, o := range c.Options {
		cstrs[i] = append([]byte(o), 0)
		ptrs[i] = &cstrs[i][0]
	}
	r := nvrtc.CompileProgram(prog, int32(len(ptrs)), unsafe.Pointer(&ptrs[0]))
	runtime.KeepAlive(cstrs)
	runtime.KeepAlive(ptrs)
	var n uint64
	if nvrtc.GetProgramLogSize(prog, &n) == 0 && n > 1 {
		buf := make([]byte, n)
		if nvrtc.GetProgramLog(prog, unsafe.Pointer(&buf[0])) == 0 {
			c.Log = strings.TrimRight(string(buf), "\x00\n ")
		}
	}
	if err := nvrtcError("nvrtcCompileProgram", r); err != nil {
		return fmt.Errorf("compile %s for %s %v: %w\n%s", c.Name, c.Arch, c.Options, err, c.Log)
	}
	if err := nvrtcError("nvrtcGetCUBINSize", nvrtc.GetCUBINSize(prog, &n)); err != nil {
		return err
	}
	c.CUBIN = make([]byte, n)
	return nvrtcError("nvrtcGetCUBIN", nvrtc.GetCUBIN(prog, unsafe.Pointer(&c.CUBIN[0])))
}
