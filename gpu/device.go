package gpu

import (
	"fmt"
	"math"
	"os"
	"runtime"
	"unsafe"
)

// Props describes a device.
type Props struct {
	Name            string
	Major, Minor    int   // compute capability
	SMs             int   // multiprocessors
	L2Bytes         int64 // L2 cache size
	MemoryBytes     int64 // global memory
	ClockKHz        int   // SM clock (0 where the driver no longer reports it)
	MemClockKHz     int   // memory clock (0 where not reported)
	BusWidthBits    int   // memory bus width
	MaxSharedOptin  int   // max dynamic shared memory per block after opt-in
	MaxThreadsPerSM int
	Driver          int // cuDriverGetVersion, e.g. 13000
}

// Arch returns the architecture name for NVRTC, e.g. "sm_90".
func (p Props) Arch() string { return fmt.Sprintf("sm_%d%d", p.Major, p.Minor) }

// DriverVersion formats Driver as "13.0".
func (p Props) DriverVersion() string { return fmt.Sprintf("%d.%d", p.Driver/1000, p.Driver%1000/10) }

// String is a one-line description.
func (p Props) String() string {
	return fmt.Sprintf("%s (%s, %d SMs, %.0f MiB L2, %.1f GiB, CUDA driver %s)", p.Name, p.Arch(), p.SMs,
		float64(p.L2Bytes)/(1<<20), float64(p.MemoryBytes)/(1<<30), p.DriverVersion())
}

// Device is an open CUDA device: its primary context, current on one
// locked OS thread that runs every driver call.
type Device struct {
	Props   Props
	ordinal int32
	ctx     uintptr
	calls   chan func()
	done    chan struct{}
	// modules caches loaded modules by compile key (CUDA thread only).
	modules map[string]*Module
}

// Open retains the primary context of device ordinal and starts the
// device's CUDA thread. Without a driver it returns an error wrapping
// ErrNoGPU.
func Open(ordinal int) (*Device, error) {
	if err := loadDriver(); err != nil {
		return nil, err
	}
	var n int32
	if err := cuErr("cuDeviceGetCount", cu.DeviceGetCount(&n)); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoGPU, err)
	}
	if ordinal < 0 || int(n) <= ordinal {
		return nil, fmt.Errorf("%w: device %d requested, %d present", ErrNoGPU, ordinal, n)
	}
	d := &Device{calls: make(chan func()), done: make(chan struct{})}
	started := make(chan error)
	go d.loop(int32(ordinal), started)
	if err := <-started; err != nil {
		return nil, err
	}
	return d, nil
}

func (d *Device) loop(ordinal int32, started chan<- error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	err := func() error {
		if err := cuErr("cuDeviceGet", cu.DeviceGet(&d.ordinal, ordinal)); err != nil {
			return err
		}
		if err := cuErr("cuDevicePrimaryCtxRetain", cu.DevicePrimaryCtxRetain(&d.ctx, d.ordinal)); err != nil {
			return err
		}
		if err := cuErr("cuCtxSetCurrent", cu.CtxSetCurrent(d.ctx)); err != nil {
			return err
		}
		return d.readProps()
	}()
	started <- err
	if err != nil {
		return
	}
	for f := range d.calls {
		f()
	}
	cu.CtxSynchronize()
	cu.DevicePrimaryCtxRelease(d.ordinal)
	close(d.done)
}

func (d *Device) readProps() error {
	p := &d.Props
	name := make([]byte, 256)
	if err := cuErr("cuDeviceGetName", cu.DeviceGetName(&name[0], int32(len(name)), d.ordinal)); err != nil {
		return err
	}
	p.Name = cgoString(&name[0])
	attr := func(a int32) int {
		var v int32
		if cu.DeviceGetAttribute(&v, a, d.ordinal) != 0 {
			return 0
		}
		return int(v)
	}
	// CUdevice_attribute values from cuda.h.
	p.Major, p.Minor = attr(75), attr(76)
	p.SMs = attr(16)
	p.L2Bytes = int64(attr(38))
	p.ClockKHz = attr(13)
	p.MemClockKHz = attr(36)
	p.BusWidthBits = attr(37)
	p.MaxSharedOptin = attr(97)
	p.MaxThreadsPerSM = attr(39)
	var mem uint64
	if err := cuErr("cuDeviceTotalMem", cu.DeviceTotalMem(&mem, d.ordinal)); err != nil {
		return err
	}
	p.MemoryBytes = int64(mem)
	var v int32
	if err := cuErr("cuDriverGetVersion", cu.DriverGetVersion(&v)); err != nil {
		return err
	}
	p.Driver = int(v)
	return nil
}

// Do runs f on the device's CUDA thread with the context current, and
// returns its error. Ctx must not escape f.
func (d *Device) Do(f func(c *Ctx) error) error {
	errc := make(chan error, 1)
	d.calls <- func() {
		defer func() {
			if r := recover(); r != nil {
				errc <- fmt.Errorf("gpu: panic on the CUDA thread: %v", r)
			}
		}()
		errc <- f(&Ctx{d: d})
	}
	return <-errc
}

// Close synchronises, releases the primary context and stops the thread.
func (d *Device) Close() error {
	close(d.calls)
	<-d.done
	return nil
}

// Ctx gives access to driver operations; it is valid only inside the
// function passed to Device.Do.
type Ctx struct{ d *Device }

// Device returns the device.
func (c *Ctx) Device() *Device { return c.d }

// Sync waits for all work on the device.
func (c *Ctx) Sync() error { return cuErr("cuCtxSynchronize", cu.CtxSynchronize()) }

// MemInfo returns free and total device memory in bytes.
func (c *Ctx) MemInfo() (free, total int64, err error) {
	var f, t uint64
	err = cuErr("cuMemGetInfo", cu.MemGetInfo(&f, &t))
	return int64(f), int64(t), err
}

// Buffer is a device allocation.
type Buffer struct {
	Ptr  uintptr
	Size int64
}

// Alloc allocates n bytes of device memory.
func (c *Ctx) Alloc(n int64) (Buffer, error) {
	if n <= 0 {
		n = 1
	}
	var p uintptr
	if err := cuErr("cuMemAlloc", cu.MemAlloc(&p, uint64(n))); err != nil {
		return Buffer{}, fmt.Errorf("alloc %d bytes: %w", n, err)
	}
	return Buffer{Ptr: p, Size: n}, nil
}

// Free releases b (a zero Buffer is ignored).
func (c *Ctx) Free(b Buffer) error {
	if b.Ptr == 0 {
		return nil
	}
	return cuErr("cuMemFree", cu.MemFree(b.Ptr))
}

func bytesOf[T any](s []T) (unsafe.Pointer, int64) {
	if len(s) == 0 {
		return nil, 0
	}
	return unsafe.Pointer(&s[0]), int64(len(s)) * int64(unsafe.Sizeof(s[0]))
}

// Upload copies src to a new device buffer.
func Upload[T any](c *Ctx, src []T) (Buffer, error) {
	p, n := bytesOf(src)
	b, err := c.Alloc(n)
	if err != nil {
		return b, err
	}
	if n > 0 {
		err = cuErr("cuMemcpyHtoD", cu.MemcpyHtoD(b.Ptr, p, uint64(n)))
	}
	runtime.KeepAlive(src)
	if err != nil {
		c.Free(b)
		return Buffer{}, err
	}
	return b, nil
}

// CopyTo copies src into the start of device buffer dst.
func CopyTo[T any](c *Ctx, dst Buffer, src []T) error {
	p, n := bytesOf(src)
	if n > dst.Size {
		return fmt.Errorf("gpu: copy of %d bytes into a buffer of %d", n, dst.Size)
	}
	if n == 0 {
		return nil
	}
	err := cuErr("cuMemcpyHtoD", cu.MemcpyHtoD(dst.Ptr, p, uint64(n)))
	runtime.KeepAlive(src)
	return err
}

// Download copies the start of device buffer src into dst (synchronous).
func Download[T any](c *Ctx, dst []T, src Buffer) error {
	p, n := bytesOf(dst)
	if n > src.Size {
		return fmt.Errorf("gpu: download of %d bytes from a buffer of %d", n, src.Size)
	}
	if n == 0 {
		return nil
	}
	err := cuErr("cuMemcpyDtoH", cu.MemcpyDtoH(p, src.Ptr, uint64(n)))
	runtime.KeepAlive(dst)
	return err
}

// Fill32 sets the buffer's 32-bit words to v on stream s.
func (c *Ctx) Fill32(b Buffer, v uint32, s Stream) error {
	return cuErr("cuMemsetD32Async", cu.MemsetD32Async(b.Ptr, v, uint64(b.Size/4), uintptr(s)))
}

// Poison fills the buffer with NaN (0x7fc00000 words) synchronously.
func (c *Ctx) Poison(b Buffer) error {
	if err := c.Fill32(b, math.Float32bits(float32(math.NaN())), 0); err != nil {
		return err
	}
	return c.Sync()
}

// CopyDtoD copies n bytes between device buffers on stream s.
func (c *Ctx) CopyDtoD(dst, src Buffer, n int64, s Stream) error {
	return cuErr("cuMemcpyDtoDAsync", cu.MemcpyDtoDAsync(dst.Ptr, src.Ptr, uint64(n), uintptr(s)))
}

// Stream is a CUstream (0 is the legacy default stream).
type Stream uintptr

// NewStream creates a non-blocking stream.
func (c *Ctx) NewStream() (Stream, error) {
	var s uintptr
	err := cuErr("cuStreamCreate", cu.StreamCreate(&s, 1))
	return Stream(s), err
}

// DestroyStream destroys s.
func (c *Ctx) DestroyStream(s Stream) error {
	return cuErr("cuStreamDestroy", cu.StreamDestroy(uintptr(s)))
}

// SyncStream waits for s.
func (c *Ctx) SyncStream(s Stream) error {
	return cuErr("cuStreamSynchronize", cu.StreamSynchronize(uintptr(s)))
}

// Event is a CUevent with timing enabled.
type Event uintptr

// NewEvent creates a timing event.
func (c *Ctx) NewEvent() (Event, error) {
	var e uintptr
	err := cuErr("cuEventCreate", cu.EventCreate(&e, 0))
	return Event(e), err
}

// DestroyEvent destroys e.
func (c *Ctx) DestroyEvent(e Event) error {
	return cuErr("cuEventDestroy", cu.EventDestroy(uintptr(e)))
}

// Record records e on s.
func (c *Ctx) Record(e Event, s Stream) error {
	return cuErr("cuEventRecord", cu.EventRecord(uintptr(e), uintptr(s)))
}

// Elapsed waits for end and returns the time from start to end in
// microseconds.
func (c *Ctx) Elapsed(start, end Event) (float64, error) {
	if err := cuErr("cuEventSynchronize", cu.EventSynchronize(uintptr(end))); err != nil {
		return 0, err
	}
	var ms float32
	if err := cuErr("cuEventElapsedTime", cu.EventElapsedTime(&ms, uintptr(start), uintptr(end))); err != nil {
		return 0, err
	}
	return float64(ms) * 1e3, nil
}

// Module is a loaded CUBIN.
type Module struct {
	h   uintptr
	Key string // compilation cache key
}

// Load loads a compiled CUBIN.
func (c *Ctx) Load(k *Compiled) (*Module, error) {
	var m uintptr
	img := append([]byte(nil), k.CUBIN...)
	err := cuErr("cuModuleLoadData", cu.ModuleLoadData(&m, unsafe.Pointer(&img[0])))
	runtime.KeepAlive(img)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", k.Name, err)
	}
	return &Module{h: m, Key: k.Key}, nil
}

// Unload unloads m.
func (c *Ctx) Unload(m *Module) error { return cuErr("cuModuleUnload", cu.ModuleUnload(m.h)) }

// Func is a kernel in a loaded module.
type Func struct {
	h         uintptr
	Name      string
	Regs      int // registers per thread
	LocalSize int // local memory (stack, spills) per thread in bytes
}

// Func looks a kernel up by its (extern "C") name.
func (c *Ctx) Func(m *Module, name string) (*Func, error) {
	var f uintptr
	if err := cuErr("cuModuleGetFunction", cu.ModuleGetFunction(&f, m.h, name)); err != nil {
		return nil, fmt.Errorf("kernel %s: %w", name, err)
	}
	fn := &Func{h: f, Name: name}
	var v int32
	if cu.FuncGetAttribute(&v, 4, f) == 0 { // CU_FUNC_ATTRIBUTE_NUM_REGS
		fn.Regs = int(v)
	}
	if cu.FuncGetAttribute(&v, 3, f) == 0 { // CU_FUNC_ATTRIBUTE_LOCAL_SIZE_BYTES
		fn.LocalSize = int(v)
	}
	return fn, nil
}

// Global returns the device memory of the __device__ variable name of
// module m.
func (c *Ctx) Global(m *Module, name string) (Buffer, error) {
	if cu.ModuleGetGlobal == nil {
		return Buffer{}, fmt.Errorf("global %s: the driver has no cuModuleGetGlobal_v2", name)
	}
	var p uintptr
	var n uint64
	if err := cuErr("cuModuleGetGlobal", cu.ModuleGetGlobal(&p, &n, m.h, name)); err != nil {
		return Buffer{}, fmt.Errorf("global %s: %w", name, err)
	}
	return Buffer{Ptr: p, Size: int64(n)}, nil
}

// Occupancy returns how many blocks of block threads (with smem bytes of
// dynamic shared memory) fit on one SM at once.
func (c *Ctx) Occupancy(f *Func, block int, smem int) (int, error) {
	var n int32
	if err := cuErr("cuOccupancyMaxActiveBlocksPerMultiprocessor", cu.OccupancyMaxBlocks(&n, f.h, int32(block), uint64(smem))); err != nil {
		return 0, fmt.Errorf("occupancy of %s: %w", f.Name, err)
	}
	return int(n), nil
}

// SetMaxDynamicSmem lets f launch with up to n bytes of dynamic shared
// memory (above 48 KiB this must be set before the launch) and prefers
// the largest shared-memory carveout, so that occupancy is not capped by
// the L1 split.
func (c *Ctx) SetMaxDynamicSmem(f *Func, n int) error {
	const maxDynamicSmem, carveout = 8, 9 // CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, _PREFERRED_SHARED_MEMORY_CARVEOUT
	if err := cuErr("cuFuncSetAttribute", cu.FuncSetAttribute(f.h, maxDynamicSmem, int32(n))); err != nil {
		return fmt.Errorf("%s: max dynamic shared memory %d: %w", f.Name, n, err)
	}
	if err := cuErr("cuFuncSetAttribute", cu.FuncSetAttribute(f.h, carveout, 100)); err != nil {
		return fmt.Errorf("%s: shared memory carveout: %w", f.Name, err)
	}
	return nil
}

// Dim3 is a grid or block shape.
type Dim3 struct{ X, Y, Z uint32 }

// Launch enqueues f on stream s. Each arg is a Buffer (its pointer),
// uintptr, int32, uint32, int (passed as int32), int64 or float32.
func (c *Ctx) Launch(f *Func, grid, block Dim3, smem uint32, s Stream, args ...any) error {
	return c.launch(launchPlain, f, grid, block, smem, s, args)
}

// LaunchCooperative enqueues f as a cooperative kernel
// (cuLaunchCooperativeKernel): the driver guarantees that every block of
// the grid is resident at once, or fails the launch, so the kernel may
// wait for all blocks (a grid barrier). Arguments as for Launch.
func (c *Ctx) LaunchCooperative(f *Func, grid, block Dim3, smem uint32, s Stream, args ...any) error {
	return c.launch(launchCoop, f, grid, block, smem, s, args)
}

// LaunchPDL enqueues f with programmatic dependent launch (Hopper and
// later, cuLaunchKernelEx with programmatic stream serialization): f's
// blocks may start while the kernel before it on s is still running, once
// that kernel's blocks have all executed griddepcontrol.launch_dependents
// (or exited). f must execute griddepcontrol.wait (the kernels'
// pdl_wait) before it touches anything the kernel before it writes.
// Inside a CUDA graph capture this becomes a programmatic edge. Where the
// device or driver lacks it (PDL false), it is a plain Launch.
func (c *Ctx) LaunchPDL(f *Func, grid, block Dim3, smem uint32, s Stream, args ...any) error {
	if !c.PDL() {
		return c.launch(launchPlain, f, grid, block, smem, s, args)
	}
	return c.launch(launchPDL, f, grid, block, smem, s, args)
}

// PDL reports whether LaunchPDL overlaps kernels: compute capability 9.0
// or later, a driver with cuLaunchKernelEx, and not turned off by
// HBENCH_PDL=0.
func (c *Ctx) PDL() bool {
	return c.d.Props.Major >= 9 && cu.LaunchEx != nil && pdlOn
}

// pdlOn is false under HBENCH_PDL=0 (for A/B timings).
var pdlOn = os.Getenv("HBENCH_PDL") != "0"

type launchMode int

const (
	launchPlain launchMode = iota
	launchCoop
	launchPDL
)

// launchConfig mirrors CUlaunchConfig.
type launchConfig struct {
	gridX, gridY, gridZ, blockX, blockY, blockZ, smem uint32
	_                                                 uint32
	stream                                            uintptr
	attrs                                             *launchAttr
	numAttrs                                          uint32
	_                                                 uint32
}

// launchAttr mirrors CUlaunchAttribute: the id, padding to 8 bytes, and
// the 64-byte value union.
type launchAttr struct {
	id  uint32
	_   uint32
	val [8]uint64
}

// cuLaunchAttributeProgrammaticStreamSerialization is
// CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION.
const cuLaunchAttributeProgrammaticStreamSerialization = 6

func (c *Ctx) launch(mode launchMode, f *Func, grid, block Dim3, smem uint32, s Stream, args []any) error {
	vals := make([]uint64, len(args))
	ptrs := make([]unsafe.Pointer, len(args))
	for i, a := range args {
		p := unsafe.Pointer(&vals[i])
		switch v := a.(type) {
		case Buffer:
			*(*uintptr)(p) = v.Ptr
		case uintptr:
			*(*uintptr)(p) = v
		case int32:
			*(*int32)(p) = v
		case uint32:
			*(*uint32)(p) = v
		case int:
			if v != int(int32(v)) {
				return fmt.Errorf("launch %s: argument %d = %d overflows int32", f.Name, i, v)
			}
			*(*int32)(p) = int32(v)
		case int64:
			*(*int64)(p) = v
		case float32:
			*(*float32)(p) = v
		default:
			return fmt.Errorf("launch %s: argument %d has unsupported type %T", f.Name, i, a)
		}
		ptrs[i] = p
	}
	if grid.Y == 0 {
		grid.Y = 1
	}
	if grid.Z == 0 {
		grid.Z = 1
	}
	if block.Y == 0 {
		block.Y = 1
	}
	if block.Z == 0 {
		block.Z = 1
	}
	var pp unsafe.Pointer
	if len(ptrs) > 0 {
		pp = unsafe.Pointer(&ptrs[0])
	}
	name := "cuLaunchKernel"
	var r result
	switch mode {
	case launchCoop:
		name = "cuLaunchCooperativeKernel"
		r = cu.LaunchCooperative(f.h, grid.X, grid.Y, grid.Z, block.X, block.Y, block.Z, smem, uintptr(s), pp)
	case launchPDL:
		name = "cuLaunchKernelEx"
		attr := &launchAttr{id: cuLaunchAttributeProgrammaticStreamSerialization}
		attr.val[0] = 1 // programmaticStreamSerializationAllowed (int) = 1
		cfg := &launchConfig{gridX: grid.X, gridY: grid.Y, gridZ: grid.Z, blockX: block.X, blockY: block.Y, blockZ: block.Z,
			smem: smem, stream: uintptr(s), attrs: attr, numAttrs: 1}
		r = cu.LaunchEx(cfg, f.h, pp, 0)
		runtime.KeepAlive(cfg)
		runtime.KeepAlive(attr)
	default:
		r = cu.LaunchKernel(f.h, grid.X, grid.Y, grid.Z, block.X, block.Y, block.Z, smem, uintptr(s), pp, 0)
	}
	runtime.KeepAlive(vals)
	runtime.KeepAlive(ptrs)
	if err := cuErr(name, r); err != nil {
		return fmt.Errorf("launch %s grid %v block %v: %w", f.Name, grid, block, err)
	}
	return nil
}

// Graph is an instantiated CUDA graph.
type Graph struct{ g, exec uintptr }

// Capture records what fn enqueues on s into a CUDA graph and
// instantiates it. fn must enqueue work only on s.
func (c *Ctx) Capture(s Stream, fn func() error) (*Graph, error) {
	if err := cuErr("cuStreamBeginCapture", cu.StreamBeginCapture(uintptr(s), 1)); err != nil { // THREAD_LOCAL
		return nil, err
	}
	ferr := fn()
	var g uintptr
	eerr := cuErr("cuStreamEndCapture", cu.StreamEndCapture(uintptr(s), &g))
	if ferr != nil {
		if g != 0 {
			cu.GraphDestroy(g)
		}
		return nil, ferr
	}
	if eerr != nil {
		return nil, eerr
	}
	var e uintptr
	if err := cuErr("cuGraphInstantiateWithFlags", cu.GraphInstantiate(&e, g, 0)); err != nil {
		cu.GraphDestroy(g)
		return nil, err
	}
	return &Graph{g: g, exec: e}, nil
}

// LaunchGraph enqueues the graph on s.
func (c *Ctx) LaunchGraph(g *Graph, s Stream) error {
	return cuErr("cuGraphLaunch", cu.GraphLaunch(g.exec, uintptr(s)))
}

// DestroyGraph frees the graph.
func (c *Ctx) DestroyGraph(g *Graph) error {
	err := cuErr("cuGraphExecDestroy", cu.GraphExecDestroy(g.exec))
	if e := cuErr("cuGraphDestroy", cu.GraphDestroy(g.g)); err == nil {
		err = e
	}
	return err
}

func sqrt32(x float32) float32 { return float32(math.Sqrt(float64(x))) }
