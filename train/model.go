package train

import (
	"math"
	"math/rand/v2"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/gonum"
)

// float is the element type of a model: float32 for training, float64 for
// the finite-difference check of the backward pass.
type float interface{ float32 | float64 }

var impl gonum.Implementation

// gemm computes C = alpha·op(A)·op(B) + beta·C for row-major matrices, with
// op(A) m×k, op(B) k×n and C m×n, through gonum's BLAS (Sgemm or Dgemm).
func gemm[F float](transA, transB bool, m, n, k int, alpha F, a []F, lda int, b []F, ldb int, beta F, c []F, ldc int) {
	if m == 0 || n == 0 {
		return
	}
	ta, tb := blas.NoTrans, blas.NoTrans
	if transA {
		ta = blas.Trans
	}
	if transB {
		tb = blas.Trans
	}
	if k == 0 {
		for i := 0; i < m; i++ {
			row := c[i*ldc : i*ldc+n]
			for j := range row {
				row[j] *= beta
			}
		}
		return
	}
	switch a := any(a).(type) {
	case []float32:
		impl.Sgemm(ta, tb, m, n, k, float32(alpha), a, lda, any(b).([]float32), ldb, float32(beta), any(c).([]float32), ldc)
	case []float64:
		impl.Dgemm(ta, tb, m, n, k, float64(alpha), a, lda, any(b).([]float64), ldb, float64(beta), any(c).([]float64), ldc)
	}
}

// layer is one dense layer y = W·x + b with W [out][in] row-major.
type layer[F float] struct {
	In, Out int
	W, B    []F
}

// mlp is a stack of dense layers; hidden layers apply the activation, the
// last is linear.
type mlp[F float] struct {
	Layers []layer[F]
}

// model is the pair of maps of one (layer, query head) plus the learned
// threshold of the relaxed logit.
type model[F float] struct {
	Q, K      mlp[F]
	Threshold F
}

// newMLP returns an MLP with widths[0] inputs and widths[len-1] outputs,
// initialised like PyTorch's nn.Linear: W and b uniform in ±1/sqrt(in).
func newMLP[F float](widths []int, rng *rand.Rand) mlp[F] {
	var m mlp[F]
	for i := 0; i+1 < len(widths); i++ {
		in, out := widths[i], widths[i+1]
		l := layer[F]{In: in, Out: out, W: make([]F, in*out), B: make([]F, out)}
		bound := 1 / math.Sqrt(float64(in))
		for j := range l.W {
			l.W[j] = F((2*rng.Float64() - 1) * bound)
		}
		for j := range l.B {
			l.B[j] = F((2*rng.Float64() - 1) * bound)
		}
		m.Layers = append(m.Layers, l)
	}
	return m
}

// params returns the parameter slices of m in a fixed order (Q layers W, B,
// then K layers); the threshold is handled separately.
func (m *model[F]) params() [][]F {
	var out [][]F
	for _, mm := range []*mlp[F]{&m.Q, &m.K} {
		for i := range mm.Layers {
			out = append(out, mm.Layers[i].W, mm.Layers[i].B)
		}
	}
	return out
}

// zerosLike returns a model of m's shape filled with zeros.
func (m *model[F]) zerosLike() *model[F] {
	z := &model[F]{}
	for k, src := range []*mlp[F]{&m.Q, &m.K} {
		dst := &z.Q
		if k == 1 {
			dst = &z.K
		}
		for _, l := range src.Layers {
			dst.Layers = append(dst.Layers, layer[F]{In: l.In, Out: l.Out, W: make([]F, len(l.W)), B: make([]F, len(l.B))})
		}
	}
	return z
}

// clone returns a deep copy of m.
func (m *model[F]) clone() *model[F] {
	c := m.zerosLike()
	dst, src := c.params(), m.params()
	for i := range dst {
		copy(dst[i], src[i])
	}
	c.Threshold = m.Threshold
	return c
}

// activation is an elementwise nonlinearity with its derivative.
type activation struct {
	name string
}

func (a activation) apply(z float64) float64 {
	switch a.name {
	case "silu":
		return z / (1 + math.Exp(-z))
	case "relu":
		return max(z, 0)
	case "tanh":
		return math.Tanh(z)
	}
	return z
}

func (a activation) deriv(z float64) float64 {
	switch a.name {
	case "silu":
		s := 1 / (1 + math.Exp(-z))
		return s * (1 + z*(1-s))
	case "relu":
		if z > 0 {
			return 1
		}
		return 0
	case "tanh":
		t := math.Tanh(z)
		return 1 - t*t
	}
	return 1
}

// tape holds what a batched MLP forward pass keeps for the backward pass:
// X[0] the input, Z[l] layer l's pre-activation and X[l+1] its output
// (X[L] = Z[L-1] for the linear last layer). All are [n][width] row-major.
type tape[F float] struct {
	n int
	X [][]F
	Z [][]F
}

// forward runs m on the n rows of x ([n][in]) and records the tape; it
// returns the output [n][out] (aliasing the tape).
func (m *mlp[F]) forward(x []F, n int, act activation, tp *tape[F]) []F {
	L := len(m.Layers)
	tp.n = n
	tp.X = grow(tp.X, L+1)
	tp.Z = grow(tp.Z, L)
	tp.X[0] = x
	for l, ly := range m.Layers {
		z := resize(tp.Z[l], n*ly.Out)
		gemm(false, true, n, ly.Out, ly.In, 1, tp.X[l], ly.In, ly.W, ly.In, 0, z, ly.Out)
		for i := 0; i < n; i++ {
			row := z[i*ly.Out : (i+1)*ly.Out]
			for j, b := range ly.B {
				row[j] += b
			}
		}
		tp.Z[l] = z
		if l == L-1 {
			tp.X[l+1] = z
			break
		}
		h := resize(tp.X[l+1], n*ly.Out)
		for i, v := range z {
			h[i] = F(act.apply(float64(v)))
		}
		tp.X[l+1] = h
	}
	return tp.X[L]
}

// backward accumulates into g the gradients of the loss given dOut, its
// gradient with respect to the output of the forward pass recorded in tp.
// dOut and the scratch buffers are overwritten.
func (m *mlp[F]) backward(dOut []F, act activation, tp *tape[F], g *mlp[F], scratch *[2][]F) {
	n := tp.n
	d := dOut
	for l := len(m.Layers) - 1; l >= 0; l-- {
		ly := m.Layers[l]
		if l < len(m.Layers)-1 {
			z := tp.Z[l]
			for i := range d {
				d[i] *= F(act.deriv(float64(z[i])))
			}
		}
		gl := &g.Layers[l]
		gemm(true, false, ly.Out, ly.In, n, 1, d, ly.Out, tp.X[l], ly.In, 1, gl.W, ly.In)
		for i := 0; i < n; i++ {
			row := d[i*ly.Out : (i+1)*ly.Out]
			for j, v := range row {
				gl.B[j] += v
			}
		}
		if l == 0 {
			break
		}
		buf := resize(scratch[l%2], n*ly.In)
		gemm(false, false, n, ly.In, ly.Out, 1, d, ly.Out, ly.W, ly.In, 0, buf, ly.In)
		scratch[l%2] = buf
		d = buf
	}
}

// batch is one minibatch: B queries against a pool of P keys.
type batch[F float] struct {
	B, P int
	XQ   []F // [B][dim] standardised queries
	XK   []F // [P][dim] standardised keys
	Y    []F // [B][P] labels: 1 when the key is among the query's top-k
	W    []F // [B][P] loss weights; 0 masks the pair out
}

// workspace holds the buffers of lossGrad, reused across minibatches.
type workspace[F float] struct {
	tq, tk   tape[F]
	aq, ak   []F
	z        []F
	daq, dak []F
	scratch  [2][]F
}

// lossGrad computes the weighted binary cross-entropy of the relaxed
// logits for batch bt and adds its gradient to g (which must be zeroed by
// the caller). With a = tanh(f_q(x_q)) and c = tanh(f_k(x_k)) (each [bits]),
// the logit of a (query, key) pair is
//
//	z = Σ_b a_b·c_b − threshold,
//
// and the loss is Σ w·[y·softplus(−z) + (1−y)·softplus(z)] / Σ w over the
// pairs of the batch. It returns the loss.
func lossGrad[F float](m *model[F], act activation, bt *batch[F], g *model[F], ws *workspace[F]) float64 {
	B, P := bt.B, bt.P
	uq := m.Q.forward(bt.XQ, B, act, &ws.tq)
	uk := m.K.forward(bt.XK, P, act, &ws.tk)
	bits := m.Q.Layers[len(m.Q.Layers)-1].Out
	ws.aq = resize(ws.aq, B*bits)
	ws.ak = resize(ws.ak, P*bits)
	for i, v := range uq {
		ws.aq[i] = F(math.Tanh(float64(v)))
	}
	for i, v := range uk {
		ws.ak[i] = F(math.Tanh(float64(v)))
	}
	ws.z = resize(ws.z, B*P)
	gemm(false, true, B, P, bits, 1, ws.aq, bits, ws.ak, bits, 0, ws.z, P)
	var sumW float64
	for _, w := range bt.W[:B*P] {
		sumW += float64(w)
	}
	if sumW == 0 {
		return 0
	}
	var loss, dth float64
	for i, zi := range ws.z {
		w := float64(bt.W[i])
		if w == 0 {
			ws.z[i] = 0
			continue
		}
		z := float64(zi) - float64(m.Threshold)
		y := float64(bt.Y[i])
		loss += w * (y*softplus(-z) + (1-y)*softplus(z))
		gz := w * (sigmoid(z) - y) / sumW
		ws.z[i] = F(gz) // reuse z as dL/dz
		dth -= gz
	}
	g.Threshold += F(dth)
	// dL/da = G·c, dL/dc = Gᵀ·a; then through tanh.
	ws.daq = resize(ws.daq, B*bits)
	ws.dak = resize(ws.dak, P*bits)
	gemm(false, false, B, bits, P, 1, ws.z, P, ws.ak, bits, 0, ws.daq, bits)
	gemm(true, false, P, bits, B, 1, ws.z, P, ws.aq, bits, 0, ws.dak, bits)
	for i, a := range ws.aq {
		ws.daq[i] *= 1 - a*a
	}
	for i, c := range ws.ak {
		ws.dak[i] *= 1 - c*c
	}
	m.Q.backward(ws.daq, act, &ws.tq, &g.Q, &ws.scratch)
	m.K.backward(ws.dak, act, &ws.tk, &g.K, &ws.scratch)
	return loss / sumW
}

func softplus(x float64) float64 {
	if x > 0 {
		return x + math.Log1p(math.Exp(-x))
	}
	return math.Log1p(math.Exp(x))
}

func sigmoid(x float64) float64 {
	if x >= 0 {
		return 1 / (1 + math.Exp(-x))
	}
	e := math.Exp(x)
	return e / (1 + e)
}

// adam is the Adam optimiser (Kingma & Ba) over a model's parameters.
type adam[F float] struct {
	lr, b1, b2, eps float64
	t               int
	m, v            *model[F]
}

func newAdam[F float](shape *model[F], lr float64) *adam[F] {
	return &adam[F]{lr: lr, b1: 0.9, b2: 0.999, eps: 1e-8, m: shape.zerosLike(), v: shape.zerosLike()}
}

// step applies one update of p from the gradient g.
func (a *adam[F]) step(p, g *model[F]) {
	a.t++
	c1 := 1 - math.Pow(a.b1, float64(a.t))
	c2 := 1 - math.Pow(a.b2, float64(a.t))
	upd := func(x, gx, mx, vx *F) {
		gv := float64(*gx)
		m := a.b1*float64(*mx) + (1-a.b1)*gv
		v := a.b2*float64(*vx) + (1-a.b2)*gv*gv
		*mx, *vx = F(m), F(v)
		*x -= F(a.lr * (m / c1) / (math.Sqrt(v/c2) + a.eps))
	}
	ps, gs, ms, vs := p.params(), g.params(), a.m.params(), a.v.params()
	for i := range ps {
		for j := range ps[i] {
			upd(&ps[i][j], &gs[i][j], &ms[i][j], &vs[i][j])
		}
	}
	upd(&p.Threshold, &g.Threshold, &a.m.Threshold, &a.v.Threshold)
}

// zero sets every gradient of g to 0.
func (m *model[F]) zero() {
	for _, p := range m.params() {
		clear(p)
	}
	m.Threshold = 0
}

func grow[T any](s []T, n int) []T {
	if len(s) < n {
		s = append(s, make([]T, n-len(s))...)
	}
	return s[:n]
}

func resize[F any](s []F, n int) []F {
	if cap(s) < n {
		return make([]F, n)
	}
	return s[:n]
}
