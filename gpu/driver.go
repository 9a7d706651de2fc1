package gpu

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"unsafe"

	"github.com/ebitengine/purego"
)

// ErrNoGPU is wrapped by every error that means no usable CUDA driver or
// device is present. Tests skip on it.
var ErrNoGPU = errors.New("gpu: no CUDA driver")

// result is a CUresult or nvrtcResult.
type result int32

// Driver entry points, bound once by loadDriver. Names are the versioned
// symbols where the driver exports several versions.
var cu struct {
	Init                    func(flags uint32) result
	DriverGetVersion        func(v *int32) result
	DeviceGet               func(dev *int32, ordinal int32) result
	DeviceGetCount          func(n *int32) result
	DeviceGetName           func(name *byte, n int32, dev int32) result
	DeviceGetAttribute      func(v *int32, attr int32, dev int32) result
	DeviceTotalMem          func(bytes *uint64, dev int32) result
	DevicePrimaryCtxRetain  func(ctx *uintptr, dev int32) result
	DevicePrimaryCtxRelease func(dev int32) result
	CtxSetCurrent           func(ctx uintptr) result
	CtxSynchronize          func() result
	MemAlloc                func(p *uintptr, n uint64) result
	MemFree                 func(p uintptr) result
	MemGetInfo              func(free, total *uint64) result
	MemcpyHtoD              func(dst uintptr, src unsafe.Pointer, n uint64) result
	MemcpyDtoH              func(dst unsafe.Pointer, src uintptr, n uint64) result
	MemcpyDtoDAsync         func(dst, src uintptr, n uint64, s uintptr) result
	MemsetD32Async          func(dst uintptr, v uint32, n uint64, s uintptr) result
	MemsetD8                func(dst uintptr, v uint8, n uint64) result
	StreamCreate            func(s *uintptr, flags uint32) result
	StreamDestroy           func(s uintptr) result
	StreamSynchronize       func(s uintptr) result
	EventCreate             func(e *uintptr, flags uint32) result
	EventDestroy            func(e uintptr) result
	EventRecord             func(e, s uintptr) result
	EventSynchronize        func(e uintptr) result
	EventElapsedTime        func(ms *float32, start, end uintptr) result
	ModuleLoadData          func(m *uintptr, image unsafe.Pointer) result
	ModuleUnload            func(m uintptr) result
	ModuleGetFunction       func(f *uintptr, m uintptr, name string) result
	FuncGetAttribute        func(v *int32, attr int32, f uintptr) result
	FuncSetAttribute        func(f uintptr, attr int32, v int32) result
	OccupancyMaxBlocks      func(n *int32, f uintptr, block int32, smem uint64) result
	LaunchKernel            func(f uintptr, gx, gy, gz, bx, by, bz, smem uint32, s uintptr, params unsafe.Pointer, extra uintptr) result
	LaunchCooperative       func(f uintptr, gx, gy, gz, bx, by, bz, smem uint32, s uintptr, params unsafe.Pointer) result
	// LaunchEx is cuLaunchKernelEx (CUDA 12.0+); nil where the driver
	// lacks it (launches with attributes then fall back to LaunchKernel).
	LaunchEx           func(cfg *launchConfig, f uintptr, params unsafe.Pointer, extra uintptr) result
	StreamBeginCapture func(s uintptr, mode int32) result
	StreamEndCapture   func(s uintptr, g *uintptr) result
	GraphInstantiate   func(e *uintptr, g uintptr, flags uint64) result
	GraphLaunch        func(e, s uintptr) result
	GraphExecDestroy   func(e uintptr) result
	GraphDestroy       func(g uintptr) result
	GetErrorName       func(r result, s **byte) result
	GetErrorString     func(r result, s **byte) result

	// ModuleGetGlobal is cuModuleGetGlobal_v2 (diagnostics only; nil
	// where it does not bind).
	ModuleGetGlobal func(p *uintptr, bytes *uint64, m uintptr, name string) result
}

var (
	driverOnce sync.Once
	driverErr  error
)

// dlopen tries each candidate library path in turn.
func dlopen(cands []string) (uintptr, string, error) {
	var errs []string
	for _, c := range cands {
		h, err := purego.Dlopen(c, purego.RTLD_NOW|purego.RTLD_GLOBAL)
		if err == nil {
			return h, c, nil
		}
		errs = append(errs, err.Error())
	}
	return 0, "", fmt.Errorf("tried %v: %v", cands, errs)
}

// bind points fptr at the first of names that lib exports.
func bind(lib uintptr, fptr any, names ...string) error {
	for _, n := range names {
		if sym, err := purego.Dlsym(lib, n); err == nil && sym != 0 {
			purego.RegisterFunc(fptr, sym)
			return nil
		}
	}
	return fmt.Errorf("symbol %v not found", names)
}

func loadDriver() error {
	driverOnce.Do(func() {
		if runtime.GOOS != "linux" {
			driverErr = fmt.Errorf("%w: GOOS %s is not supported (linux only)", ErrNoGPU, runtime.GOOS)
			return
		}
		cands := []string{"libcuda.so.1", "libcuda.so"}
		if p := os.Getenv("HBENCH_LIBCUDA"); p != "" {
			cands = append([]string{p}, cands...)
		}
		lib, _, err := dlopen(cands)
		if err != nil {
			driverErr = fmt.Errorf("%w: cannot load libcuda: %v", ErrNoGPU, err)
			return
		}
		type sym struct {
			f     any
			names []string
		}
		for _, s := range []sym{
			{&cu.Init, []string{"cuInit"}},
			{&cu.DriverGetVersion, []string{"cuDriverGetVersion"}},
			{&cu.DeviceGet, []string{"cuDeviceGet"}},
			{&cu.DeviceGetCount, []string{"cuDeviceGetCount"}},
			{&cu.DeviceGetName, []string{"cuDeviceGetName"}},
			{&cu.DeviceGetAttribute, []string{"cuDeviceGetAttribute"}},
			{&cu.DeviceTotalMem, []string{"cuDeviceTotalMem_v2"}},
			{&cu.DevicePrimaryCtxRetain, []string{"cuDevicePrimaryCtxRetain"}},
			{&cu.DevicePrimaryCtxRelease, []string{"cuDevicePrimaryCtxRelease_v2", "cuDevicePrimaryCtxRelease"}},
			{&cu.CtxSetCurrent, []string{"cuCtxSetCurrent"}},
			{&cu.CtxSynchronize, []string{"cuCtxSynchronize"}},
			{&cu.MemAlloc, []string{"cuMemAlloc_v2"}},
			{&cu.MemFree, []string{"cuMemFree_v2"}},
			{&cu.MemGetInfo, []string{"cuMemGetInfo_v2"}},
			{&cu.MemcpyHtoD, []string{"cuMemcpyHtoD_v2"}},
			{&cu.MemcpyDtoH, []string{"cuMemcpyDtoH_v2"}},
			{&cu.MemcpyDtoDAsync, []string{"cuMemcpyDtoDAsync_v2"}},
			{&cu.MemsetD32Async, []string{"cuMemsetD32Async"}},
			{&cu.MemsetD8, []string{"cuMemsetD8_v2"}},
			{&cu.StreamCreate, []string{"cuStreamCreate"}},
			{&cu.StreamDestroy, []string{"cuStreamDestroy_v2"}},
			{&cu.StreamSynchronize, []string{"cuStreamSynchronize"}},
			{&cu.EventCreate, []string{"cuEventCreate"}},
			{&cu.EventDestroy, []string{"cuEventDestroy_v2"}},
			{&cu.EventRecord, []string{"cuEventRecord"}},
			{&cu.EventSynchronize, []string{"cuEventSynchronize"}},
			{&cu.EventElapsedTime, []string{"cuEventElapsedTime_v2", "cuEventElapsedTime"}},
			{&cu.ModuleLoadData, []string{"cuModuleLoadData"}},
			{&cu.ModuleUnload, []string{"cuModuleUnload"}},
			{&cu.ModuleGetFunction, []string{"cuModuleGetFunction"}},
			{&cu.FuncGetAttribute, []string{"cuFuncGetAttribute"}},
			{&cu.FuncSetAttribute, []string{"cuFuncSetAttribute"}},
			{&cu.OccupancyMaxBlocks, []string{"cuOccupancyMaxActiveBlocksPerMultiprocessor"}},
			{&cu.LaunchKernel, []string{"cuLaunchKernel"}},
			{&cu.LaunchCooperative, []string{"cuLaunchCooperativeKernel"}},
			{&cu.StreamBeginCapture, []string{"cuStreamBeginCapture_v2"}},
			{&cu.StreamEndCapture, []string{"cuStreamEndCapture"}},
			{&cu.GraphInstantiate, []string{"cuGraphInstantiateWithFlags"}},
			{&cu.GraphLaunch, []string{"cuGraphLaunch"}},
			{&cu.GraphExecDestroy, []string{"cuGraphExecDestroy"}},
			{&cu.GraphDestroy, []string{"cuGraphDestroy"}},
			{&cu.GetErrorName, []string{"cuGetErrorName"}},
			{&cu.GetErrorString, []string{"cuGetErrorString"}},
		} {
			if err := bind(lib, s.f, s.names...); err != nil {
				driverErr = fmt.Errorf("%w: libcuda: %v", ErrNoGPU, err)
				return
			}
		}
		if bind(lib, &cu.LaunchEx, "cuLaunchKernelEx") != nil {
			cu.LaunchEx = nil
		}
		if bind(lib, &cu.ModuleGetGlobal, "cuModuleGetGlobal_v2") != nil {
			cu.ModuleGetGlobal = nil
		}
		if r := cu.Init(0); r != 0 {
			driverErr = fmt.Errorf("%w: %v", ErrNoGPU, cuErr("cuInit", r))
		}
	})
	return driverErr
}

// Error is a failed CUDA driver or NVRTC call.
type Error struct {
	Op   string // the API function
	Code int    // CUresult or nvrtcResult
	Name string // e.g. CUDA_ERROR_OUT_OF_MEMORY
	Msg  string // the driver's description
}

func (e *Error) Error() string {
	if e.Msg != "" {
		return fmt.Sprintf("%s: %s (%d): %s", e.Op, e.Name, e.Code, e.Msg)
	}
	return fmt.Sprintf("%s: %s (%d)", e.Op, e.Name, e.Code)
}

// cgoString copies a NUL-terminated C string.
func cgoString(p *byte) string {
	if p == nil {
		return ""
	}
	var b []byte
	for q := unsafe.Pointer(p); *(*byte)(q) != 0; q = unsafe.Add(q, 1) {
		b = append(b, *(*byte)(q))
	}
	return string(b)
}

// cuErr turns a CUresult into an *Error (nil for CUDA_SUCCESS).
func cuErr(op string, r result) error {
	if r == 0 {
		return nil
	}
	e := &Error{Op: op, Code: int(r), Name: fmt.Sprintf("CUresult(%d)", r)}
	var p *byte
	if cu.GetErrorName != nil && cu.GetErrorName(r, &p) == 0 {
		e.Name = cgoString(p)
	}
	if cu.GetErrorString != nil && cu.GetErrorString(r, &p) == 0 {
		e.Msg = cgoString(p)
	}
	return e
}

// NVRTC entry points.
var nvrtc struct {
	Version           func(major, minor *int32) result
	CreateProgram     func(p *uintptr, src, name string, nh int32, headers, names uintptr) result
	DestroyProgram    func(p *uintptr) result
	CompileProgram    func(p uintptr, n int32, opts unsafe.Pointer) result
	GetCUBINSize      func(p uintptr, n *uint64) result
	GetCUBIN          func(p uintptr, dst unsafe.Pointer) result
	GetProgramLogSize func(p uintptr, n *uint64) result
	GetProgramLog     func(p uintptr, dst unsafe.Pointer) result
	GetErrorString    func(r result) string
	major, minor      int32
	path              string
}

var (
	nvrtcOnce sync.Once
	nvrtcErr  error
)

// nvrtcCandidates lists where NVRTC is looked for, in order: the
// HBENCH_NVRTC override, the loader's search path (CUDA 13, then 12),
// $CUDA_HOME/lib64, /usr/local/cuda/lib64, and the pip wheel
// nvidia-cuda-nvrtc of the python3 installs found on the H200 image.
func nvrtcCandidates() []string {
	var c []string
	if p := os.Getenv("HBENCH_NVRTC"); p != "" {
		c = append(c, p)
	}
	names := []string{"libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so"}
	c = append(c, names...)
	dirs := []string{}
	if h := os.Getenv("CUDA_HOME"); h != "" {
		dirs = append(dirs, filepath.Join(h, "lib64"))
	}
	dirs = append(dirs, "/usr/local/cuda/lib64", "/usr/local/cuda/targets/x86_64-linux/lib")
	for _, g := range []string{
		"/opt/torch/.venv/lib/python3*/site-packages/nvidia/cu13/lib",
		"/opt/torch/.venv/lib/python3*/site-packages/nvidia/cuda_nvrtc/lib",
		"/usr/local/lib/python3*/dist-packages/nvidia/cu13/lib",
		"/usr/local/lib/python3*/dist-packages/nvidia/cuda_nvrtc/lib",
		"/usr/lib/python3*/site-packages/nvidia/cuda_nvrtc/lib",
	} {
		m, _ := filepath.Glob(g)
		dirs = append(dirs, m...)
	}
	for _, d := range dirs {
		for _, n := range names {
			c = append(c, filepath.Join(d, n))
		}
	}
	return c
}

func loadNVRTC() error {
	nvrtcOnce.Do(func() {
		lib, path, err := dlopen(nvrtcCandidates())
		if err != nil {
			nvrtcErr = fmt.Errorf("%w: cannot load NVRTC (set HBENCH_NVRTC to libnvrtc.so's path): %v", ErrNoGPU, err)
			return
		}
		nvrtc.path = path
		type sym struct {
			f    any
			name string
		}
		for _, s := range []sym{
			{&nvrtc.Version, "nvrtcVersion"},
			{&nvrtc.CreateProgram, "nvrtcCreateProgram"},
			{&nvrtc.DestroyProgram, "nvrtcDestroyProgram"},
			{&nvrtc.CompileProgram, "nvrtcCompileProgram"},
			{&nvrtc.GetCUBINSize, "nvrtcGetCUBINSize"},
			{&nvrtc.GetCUBIN, "nvrtcGetCUBIN"},
			{&nvrtc.GetProgramLogSize, "nvrtcGetProgramLogSize"},
			{&nvrtc.GetProgramLog, "nvrtcGetProgramLog"},
			{&nvrtc.GetErrorString, "nvrtcGetErrorString"},
		} {
			if err := bind(lib, s.f, s.name); err != nil {
				nvrtcErr = fmt.Errorf("%w: %s: %v", ErrNoGPU, path, err)
				return
			}
		}
		if r := nvrtc.Version(&nvrtc.major, &nvrtc.minor); r != 0 {
			nvrtcErr = nvrtcError("nvrtcVersion", r)
		}
	})
	return nvrtcErr
}

func nvrtcError(op string, r result) error {
	if r == 0 {
		return nil
	}
	return &Error{Op: op, Code: int(r), Name: nvrtc.GetErrorString(r)}
}

// NVRTCVersion returns the loaded NVRTC's version, e.g. "13.0", and its
// path.
func NVRTCVersion() (string, string, error) {
	if err := loadNVRTC(); err != nil {
		return "", "", err
	}
	return fmt.Sprintf("%d.%d", nvrtc.major, nvrtc.minor), nvrtc.path, nil
}
