// HashAttention decode step on the GPU: query codes, XOR+popcount scoring
// fused with a counting select, for the sparse decode of decode.cu.
//
// Specialised by defines:
//   IN_DIM     head dimension (64 or 128), the MLPs' input width
//   HID        hidden width of the MLPs (128): in -> HID -> HID -> BITS, SiLU
//   BITS       code bits, 32 or 64 (WORDS = BITS/32 uint32 words per code)
//   SEL_HEADS  query heads whose scores are summed into one index list
//              (1: per query head; the GQA group size: shared per KV head)
//   CODE_DIV   query heads per key-code head (1: key codes per query head,
//              as the authors do; the group size: one code per KV head)
//   DTYPE_BF16 1 for bf16 keys, 0 for fp16
//
// Weights of one map (fp32, transposed so that thread i reads column i):
// W1T[IN_DIM][HID], b1[HID], W2T[HID][HID], b2[HID], W3T[HID][BITS], b3[BITS].
// Code bit i is set when output i is > 0; word w holds bits 32w..32w+31
// (the little-endian halves of methods.MLP.Code's uint64 words).
//
// Counting select: a list's score of key j is
//   sum over its SEL_HEADS query heads h of (BITS - popcount(qc[h] ^ kc[ch(h)][j])),
// an integer in [0, SMAX]. Per list, over the middle range [lo, hi) of the
// budget: select_hist writes one histogram per block (a fixed chunk of
// positions), select_threshold finds the threshold score T and how many
// keys r of score T to take (the lowest positions first), and each
// block's counts of keys > T and == T before it; select_compact rescans
// its chunk in order and writes key j to slot sink + gt_before(j) +
// min(eq_before(j), r). Sink and local positions fill the ends, so each
// list is ascending and equals the CPU TopK (score desc, position asc).

#ifndef IN_DIM
#define IN_DIM 128
#endif
#ifndef HID
#define HID 128
#endif
#ifndef BITS
#define BITS 32
#endif
#ifndef SEL_HEADS
#define SEL_HEADS 1
#endif
#ifndef CODE_DIV
#define CODE_DIV 1
#endif
#ifndef DTYPE_BF16
#define DTYPE_BF16 1
#endif

#define WORDS (BITS / 32)
#define SMAX (SEL_HEADS * BITS)
#define NBINS (SMAX + 1)
#define MAP_FLOATS (IN_DIM * HID + HID + HID * HID + HID + HID * BITS + BITS)
#define SEL_THREADS 256
#define UNR 8  // keys per thread per pass: their code loads are in flight together

__device__ __forceinline__ float silu(float x) { return x / (1.f + expf(-x)); }

#ifndef MLP_PARTS
#define MLP_PARTS 4
#endif
#define MLP_THREADS (HID * MLP_PARTS)

// sum_parts adds the PARTS partial sums a of output i = threadIdx.x % HID
// through red, in part order; the result is meaningful in part 0.
template <int PARTS>
__device__ __forceinline__ float sum_parts(float a, float (*red)[HID]) {
    const int i = threadIdx.x % HID, part = threadIdx.x / HID;
    red[part][i] = a;
    __syncthreads();
    float t = 0.f;
    if (part == 0) {
#pragma unroll
        for (int p = 0; p < PARTS; p++) t += red[p][i];
    }
    __syncthreads();
    return t;
}

// layer: out[i] = sum_j W[j*COLS + i] * x[j] for i < COLS, with each of
// PARTS thread groups of HID threads summing 1/PARTS of the ROWS inputs
// (a thread's weight loads are issued CH at a time before their use, all
// at once by default, so one block per head streams its weights with many
// loads in flight) and red reducing them. The sum order is fixed by
// PARTS, not CH.
template <int ROWS, int COLS, int PARTS = MLP_PARTS, int CHMAX = ROWS>
__device__ __forceinline__ float layer(const float* __restrict__ W, const float* x, float (*red)[HID]) {
    constexpr int PER = ROWS / PARTS;
    constexpr int CH = PER < CHMAX ? PER : CHMAX;
    const int i = threadIdx.x % HID, part = threadIdx.x / HID;
    float a = 0.f;
    if (i < COLS) {
#pragma unroll
        for (int c = 0; c < PER; c += CH) {
            float w[CH];
#pragma unroll
            for (int j = 0; j < CH; j++) w[j] = __ldg(W + (part * PER + c + j) * COLS + i);
#pragma unroll
            for (int j = 0; j < CH; j++) a = fmaf(w[j], x[part * PER + c + j], a);
        }
    }
    return sum_parts<PARTS>(a, red);
}

#ifndef MLP_PREFETCH
#define MLP_PREFETCH 1
#endif

// prefetch_map asks L2 for every 128-byte line of one packed map, so that
// the second and third layers' weights are on chip (or on their way) by
// the time their loads issue: one HBM round trip for the map instead of
// one per layer.
__device__ __forceinline__ void prefetch_map(const float* __restrict__ w) {
#if MLP_PREFETCH
    const char* p = (const char*)w;
    for (int off = threadIdx.x * 128; off < MAP_FLOATS * 4; off += blockDim.x * 128)
        asm volatile("prefetch.global.L2 [%0];" ::"l"(p + off));
#endif
}

#ifndef MLP_PRELOAD
#define MLP_PRELOAD 0
#endif

// LayerW holds one thread's weights of a layer in registers (the same
// elements and sum order as layer with CH = ROWS/PARTS), so that a map's
// three layers are loaded at once: one memory round trip per map.
template <int ROWS, int COLS, int PARTS>
struct LayerW {
    static constexpr int PER = ROWS / PARTS;
    float w[PER];
    __device__ __forceinline__ void load(const float* __restrict__ W) {
        const int i = threadIdx.x % HID, part = threadIdx.x / HID;
        if (i < COLS) {
#pragma unroll
            for (int j = 0; j < PER; j++) w[j] = __ldg(W + (part * PER + j) * COLS + i);
        }
    }
    __device__ __forceinline__ float apply(const float* x, float (*red)[HID]) const {
        const int i = threadIdx.x % HID, part = threadIdx.x / HID;
        float a = 0.f;
        if (i < COLS) {
#pragma unroll
            for (int j = 0; j < PER; j++) a = fmaf(w[j], x[part * PER + j], a);
        }
        return sum_parts<PARTS>(a, red);  // meaningful in part 0
    }
};

// mlp_code: blockDim.x == HID * PARTS; xs is the input in shared memory;
// writes the code words to out.
template <int PARTS = MLP_PARTS, int CHMAX = 1 << 30>
__device__ void mlp_code(const float* xs, const float* __restrict__ w, unsigned int* out) {
    __shared__ float h1[HID], h2[HID];
    __shared__ float red[PARTS][HID];
    const int i = threadIdx.x;
    const float* W1 = w;
    const float* B1 = W1 + IN_DIM * HID;
    const float* W2 = B1 + HID;
    const float* B2 = W2 + HID * HID;
    const float* W3 = B2 + HID;
    const float* B3 = W3 + HID * BITS;
#if MLP_PRELOAD
    if constexpr (PARTS >= 4) {  // (fewer parts: too many registers)
        LayerW<IN_DIM, HID, PARTS> l1;
        LayerW<HID, HID, PARTS> l2;
        LayerW<HID, BITS, PARTS> l3;
        l1.load(W1);
        l2.load(W2);
        l3.load(W3);
        const float b1 = i < HID ? __ldg(B1 + i) : 0.f, b2 = i < HID ? __ldg(B2 + i) : 0.f;
        const float b3 = i < BITS ? __ldg(B3 + i) : 0.f;
        float a = l1.apply(xs, red);
        if (i < HID) h1[i] = silu(a + b1);
        __syncthreads();
        a = l2.apply(h1, red);
        if (i < HID) h2[i] = silu(a + b2);
        __syncthreads();
        a = l3.apply(h2, red);
        if (i < ((BITS + 31) / 32) * 32) {
            const bool bit = i < BITS && a + b3 > 0.f;
            unsigned int word = __ballot_sync(0xffffffffu, bit);
            if ((i & 31) == 0) out[i / 32] = word;
        }
        return;
    }
#endif
    float a = layer<IN_DIM, HID, PARTS, CHMAX>(W1, xs, red);
    if (i < HID) h1[i] = silu(a + B1[i]);
    __syncthreads();
    a = layer<HID, HID, PARTS, CHMAX>(W2, h1, red);
    if (i < HID) h2[i] = silu(a + B2[i]);
    __syncthreads();
    a = layer<HID, BITS, PARTS, CHMAX>(W3, h2, red);
    if (i < ((BITS + 31) / 32) * 32) {
        const bool bit = i < BITS && a + B3[i] > 0.f;
        unsigned int word = __ballot_sync(0xffffffffu, bit);
        if ((i & 31) == 0) out[i / 32] = word;
    }
}

// query_codes: grid (HQ, B), block MLP_THREADS. q fp32 [B][HQ][IN_DIM]; w: HQ maps;
// qc [B][HQ][WORDS].
extern "C" __global__ void __launch_bounds__(MLP_THREADS)
query_codes(const float* __restrict__ q, const float* __restrict__ w, int hq, unsigned int* __restrict__ qc) {
    __shared__ float xs[IN_DIM];
    pdl_launch_dependents();  // the select may start prefetching its key codes
    const int h = blockIdx.x, b = blockIdx.y;
    prefetch_map(w + (size_t)h * MAP_FLOATS);
    for (int j = threadIdx.x; j < IN_DIM; j += blockDim.x) xs[j] = q[((size_t)b * hq + h) * IN_DIM + j];
    __syncthreads();
    mlp_code<>(xs, w + (size_t)h * MAP_FLOATS, qc + ((size_t)b * hq + h) * WORDS);
}

// key_codes (prefill): grid (N, HC, B), block MLP_THREADS. k 16-bit [B][HKV][N][IN_DIM];
// w: HC maps; kc [B][HC][N][WORDS]; code head c reads KV head c*HKV/HC.
extern "C" __global__ void __launch_bounds__(MLP_THREADS)
key_codes(const unsigned short* __restrict__ k, const float* __restrict__ w, int N, int hkv, int hc,
          unsigned int* __restrict__ kc) {
    __shared__ float xs[IN_DIM];
    const int j = blockIdx.x, c = blockIdx.y, b = blockIdx.z;
    const int kvh = c / (hc / hkv);
    const unsigned short* row = k + (((size_t)b * hkv + kvh) * N + j) * IN_DIM;
    for (int t = threadIdx.x; t < IN_DIM; t += blockDim.x) xs[t] = ld16(row + t);
    __syncthreads();
    mlp_code<>(xs, w + (size_t)c * MAP_FLOATS, kc + (((size_t)b * hc + c) * N + j) * WORDS);
}

// Scoring context of one list.
#if CODE_DIV >= SEL_HEADS
#define KHEADS 1  // one key-code head serves all the list's query heads
#else
#define KHEADS SEL_HEADS
#endif

// Bit planes. Where one key code serves the list's G = SEL_HEADS > 1 query
// heads, the sum over g of popcount(q_g ^ k) depends on bit b of k only
// through n_b, the number of the q_g with bit b set: it adds n_b if k_b is
// 0 and G - n_b if it is 1, so it is C + sum over b of k_b * (G - 2 n_b),
// C = sum n_b. Split |G - 2 n_b| into binary digits: with P_j (N_j) the
// bits whose weight is positive (negative) with digit j set,
//   sum_b k_b (G - 2 n_b) = sum_j 2^j (popc(k & P_j) - popc(k & N_j))
//                         = sum_j 2^j (popc((k & P_j) | (~k & N_j)) - popc(N_j))
// (P_j and N_j are disjoint). So a key costs one popcount per digit of G
// (2 for G = 4, 3 for G = 8) instead of G, with the masks and constants
// computed once per list from the query codes; the score is the same
// integer. Digits: from 1 (G even: every weight is even) or 0 (G odd) up
// to floor(log2 G).
__host__ __device__ constexpr int ilog2c(int x) { return x < 2 ? 0 : 1 + ilog2c(x / 2); }
#if KHEADS == 1 && SEL_HEADS > 1
#define PLANES 1
#define PL_LO (SEL_HEADS % 2 == 0 ? 1 : 0)
#define NPL (ilog2c(SEL_HEADS) - PL_LO + 1)  // planes
#define NCB (ilog2c(SEL_HEADS) + 1)          // bits of a count 0..SEL_HEADS
#else
#define PLANES 0
#endif

struct Scorer {
    unsigned int q[SEL_HEADS][WORDS];
    const unsigned int* kc[SEL_HEADS];  // code-head bases, [N][WORDS]
#if PLANES
    unsigned int pm[NPL][WORDS], nm[NPL][WORDS];  // P_j, N_j of each word
    int base;                                      // the score of a key with no plane bit taken
#endif

    __device__ __forceinline__ void init(const unsigned int* qc, const unsigned int* __restrict__ kcodes, int b, int list,
                                         int hq, int N) {
        keys(kcodes, b, list, hq, N);
        query(qc, b, list, hq);
    }

    // keys sets the list's key-code head bases.
    __device__ __forceinline__ void keys(const unsigned int* __restrict__ kcodes, int b, int list, int hq, int N) {
        const int hc = hq / CODE_DIV;
#pragma unroll
        for (int g = 0; g < SEL_HEADS; g++) {
            const int h = list * SEL_HEADS + g;
            kc[g] = kcodes + ((size_t)b * hc + h / CODE_DIV) * (size_t)N * WORDS;
        }
    }

    // query loads the list's query codes (through L2: another block of the
    // same launch may have just written them).
    __device__ __forceinline__ void query(const unsigned int* qc, int b, int list, int hq) {
#pragma unroll
        for (int g = 0; g < SEL_HEADS; g++) {
            const int h = list * SEL_HEADS + g;
#pragma unroll
            for (int w = 0; w < WORDS; w++) q[g][w] = __ldcg(qc + ((size_t)b * hq + h) * WORDS + w);
        }
#if PLANES
        // score = G*BITS - sum_w (C_w + sum_j 2^j (popc(mux_j) - popc(N_j)))
        base = SEL_HEADS * BITS;
#pragma unroll
        for (int w = 0; w < WORDS; w++) {
            unsigned int acc[NCB];  // bit-sliced n_b: bit i of every n_b in acc[i]
#pragma unroll
            for (int i = 0; i < NCB; i++) acc[i] = 0u;
#pragma unroll
            for (int g = 0; g < SEL_HEADS; g++) {
                unsigned int c = q[g][w];
#pragma unroll
                for (int i = 0; i < NCB; i++) {
                    const unsigned int t = acc[i] & c;
                    acc[i] ^= c;
                    c = t;
                }
            }
#pragma unroll
            for (int i = 0; i < NCB; i++) base -= __popc(acc[i]) << i;  // C_w
#pragma unroll
            for (int j = 0; j < NPL; j++) pm[j][w] = nm[j][w] = 0u;
#pragma unroll
            for (int v = 0; v <= SEL_HEADS; v++) {
                unsigned int e = ~0u;  // the bits with n_b == v
#pragma unroll
                for (int i = 0; i < NCB; i++) e &= ((v >> i) & 1) ? acc[i] : ~acc[i];
                const int wt = SEL_HEADS - 2 * v, mag = wt < 0 ? -wt : wt;
#pragma unroll
                for (int j = 0; j < NPL; j++)
                    if ((mag >> (PL_LO + j)) & 1) {
                        if (wt > 0)
                            pm[j][w] |= e;
                        else
                            nm[j][w] |= e;
                    }
            }
#pragma unroll
            for (int j = 0; j < NPL; j++) base += __popc(nm[j][w]) << (PL_LO + j);
        }
#endif
    }

    // score_word is the score of word w of a key code whose other words
    // score nothing: with one word, the key's score.
    __device__ __forceinline__ int score_word(unsigned int k, int w) const {
#if PLANES
        int s = w == 0 ? base : 0;
#pragma unroll
        for (int j = 0; j < NPL; j++) s -= __popc((k & pm[j][w]) | (~k & nm[j][w])) << (PL_LO + j);
        return s;
#else
        int s = 0;
#pragma unroll
        for (int g = 0; g < SEL_HEADS; g++) s += 32 - __popc(q[g][w] ^ k);
        return s;
#endif
    }

    // load fetches key j's code words (of each key-code head of the list).
    __device__ __forceinline__ void load(int j, unsigned int (&k)[KHEADS][WORDS]) const {
#pragma unroll
        for (int g = 0; g < KHEADS; g++)
#pragma unroll
            for (int w = 0; w < WORDS; w++) k[g][w] = __ldg(kc[g] + (size_t)j * WORDS + w);
    }

    __device__ __forceinline__ int score_of(const unsigned int (&k)[KHEADS][WORDS]) const {
        int s = 0;
#if KHEADS == 1
#pragma unroll
        for (int w = 0; w < WORDS; w++) s += score_word(k[0][w], w);
#else
#pragma unroll
        for (int g = 0; g < SEL_HEADS; g++)
#pragma unroll
            for (int w = 0; w < WORDS; w++) s += 32 - __popc(q[g][w] ^ k[g][w]);
#endif
        return s;
    }

    __device__ __forceinline__ int score(int j) const {
        unsigned int k[KHEADS][WORDS];
        load(j, k);
        return score_of(k);
    }
};

// select_hist: grid (nblk, NL, B), block SEL_THREADS. Block x of list L
// counts the scores of positions [lo + x*chunk, min(lo + (x+1)*chunk, hi))
// into bhist [B][NL][nblk][NBINS].
extern "C" __global__ void __launch_bounds__(SEL_THREADS)
select_hist(const unsigned int* __restrict__ qc, const unsigned int* __restrict__ kcodes, int N, int hq, int lo, int hi,
            int chunk, int* __restrict__ bhist) {
    __shared__ int hist[SEL_THREADS / 32][NBINS];
    const int x = blockIdx.x, list = blockIdx.y, b = blockIdx.z;
    const int warp = threadIdx.x / 32;
    for (int i = threadIdx.x; i < (SEL_THREADS / 32) * NBINS; i += SEL_THREADS) (&hist[0][0])[i] = 0;
    Scorer sc;
    sc.init(qc, kcodes, b, list, hq, N);
    __syncthreads();
    const int start = lo + x * chunk, end = min(start + chunk, hi);
    for (int j0 = start; j0 < end; j0 += SEL_THREADS * UNR) {
        int sv[UNR];
#pragma unroll
        for (int u = 0; u < UNR; u++) {
            const int j = j0 + u * SEL_THREADS + threadIdx.x;
            sv[u] = j < end ? sc.score(j) : -1;
        }
#pragma unroll
        for (int u = 0; u < UNR; u++)
            if (sv[u] >= 0) atomicAdd(&hist[warp][sv[u]], 1);
    }
    __syncthreads();
    int* out = bhist + (((size_t)b * gridDim.y + list) * gridDim.x + x) * NBINS;
    for (int s = threadIdx.x; s < NBINS; s += SEL_THREADS) {
        int t = 0;
#pragma unroll
        for (int w = 0; w < SEL_THREADS / 32; w++) t += hist[w][s];
        out[s] = t;
    }
}

// select_threshold: grid (NL, B), block SEL_THREADS, dynamic shared memory
// nblk*NBINS ints; nblk <= 4*SEL_THREADS. Writes thr [B][NL][2] = (T, r)
// and base [B][NL][nblk][2] = (keys > T, keys == T) in the blocks before
// each block. With heavy == 0, T = SMAX+1 and nothing is selected.
extern "C" __global__ void __launch_bounds__(SEL_THREADS)
select_threshold(const int* __restrict__ bhist, int nblk, int heavy, int* __restrict__ thr, int* __restrict__ base) {
    extern __shared__ int hs[];  // [nblk][NBINS]
    __shared__ int tot[NBINS];
    __shared__ int sT;
    __shared__ int sgt[SEL_THREADS], seq[SEL_THREADS];
    const int list = blockIdx.x, b = blockIdx.y, nl = gridDim.x;
    const int* h = bhist + ((size_t)b * nl + list) * nblk * NBINS;
    for (int i = threadIdx.x; i < nblk * NBINS; i += SEL_THREADS) hs[i] = h[i];
    if (threadIdx.x == 0) sT = SMAX + 1;
    __syncthreads();
    for (int s = threadIdx.x; s < NBINS; s += SEL_THREADS) {
        int t = 0;
        for (int x = 0; x < nblk; x++) t += hs[x * NBINS + s];
        tot[s] = t;
    }
    __syncthreads();
    // T is the bin with (keys above T) < heavy <= (keys at or above T).
    for (int s = threadIdx.x; s < NBINS; s += SEL_THREADS) {
        int above = 0;
        for (int u = s + 1; u < NBINS; u++) above += tot[u];
        if (heavy > 0 && above < heavy && heavy <= above + tot[s]) {
            sT = s;
            int* t = thr + ((size_t)b * nl + list) * 2;
            t[0] = s;
            t[1] = heavy - above;
        }
    }
    if (heavy <= 0 && threadIdx.x == 0) {
        int* t = thr + ((size_t)b * nl + list) * 2;
        t[0] = SMAX + 1;
        t[1] = 0;
    }
    __syncthreads();
    const int T = sT;
    // Each thread sums up to 4 consecutive blocks, then a block-wide scan.
    const int per = (nblk + SEL_THREADS - 1) / SEL_THREADS;
    int gt[4], eq[4], mygt = 0, myeq = 0;
#pragma unroll
    for (int u = 0; u < 4; u++) {
        gt[u] = eq[u] = 0;
        const int x = threadIdx.x * per + u;
        if (u < per && x < nblk) {
            for (int s = T + 1; s <= SMAX; s++) gt[u] += hs[x * NBINS + s];
            eq[u] = T <= SMAX ? hs[x * NBINS + T] : 0;
        }
        mygt += gt[u];
        myeq += eq[u];
    }
    sgt[threadIdx.x] = mygt;
    seq[threadIdx.x] = myeq;
    __syncthreads();
    for (int off = 1; off < SEL_THREADS; off <<= 1) {
        int a = threadIdx.x >= off ? sgt[threadIdx.x - off] : 0;
        int c = threadIdx.x >= off ? seq[threadIdx.x - off] : 0;
        __syncthreads();
        sgt[threadIdx.x] += a;
        seq[threadIdx.x] += c;
        __syncthreads();
    }
    int g0 = sgt[threadIdx.x] - mygt, e0 = seq[threadIdx.x] - myeq;  // exclusive
    int* bo = base + ((size_t)b * nl + list) * nblk * 2;
#pragma unroll
    for (int u = 0; u < 4; u++) {
        const int x = threadIdx.x * per + u;
        if (u < per && x < nblk) {
            bo[2 * x] = g0;
            bo[2 * x + 1] = e0;
            g0 += gt[u];
            e0 += eq[u];
        }
    }
}

// select_compact: grid (nblk, NL, B), block SEL_THREADS. Writes the lists
// idx [B][NL][total]: sink positions, the selected middle positions in
// ascending order, local positions.
extern "C" __global__ void __launch_bounds__(SEL_THREADS)
select_compact(const unsigned int* __restrict__ qc, const unsigned int* __restrict__ kcodes, int N, int hq, int lo,
               int hi, int chunk, const int* __restrict__ thr, const int* __restrict__ base, int sink, int local,
               int total, int* __restrict__ idx) {
    __shared__ int wgt[SEL_THREADS / 32], weq[SEL_THREADS / 32];
    const int x = blockIdx.x, list = blockIdx.y, b = blockIdx.z, nl = gridDim.y;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    int* out = idx + ((size_t)b * nl + list) * total;
    if (x == 0) {
        for (int i = threadIdx.x; i < sink; i += SEL_THREADS) out[i] = i;
        for (int i = threadIdx.x; i < local; i += SEL_THREADS) out[total - local + i] = N - local + i;
    }
    const int* t = thr + ((size_t)b * nl + list) * 2;
    const int T = t[0], r = t[1];
    const int* bo = base + (((size_t)b * nl + list) * gridDim.x + x) * 2;
    int gtRun = bo[0], eqRun = bo[1];
    if (T > SMAX) return;  // heavy == 0
    Scorer sc;
    sc.init(qc, kcodes, b, list, hq, N);
    const int start = lo + x * chunk, end = min(start + chunk, hi);
    const unsigned int lt = (1u << lane) - 1;
    for (int j00 = start; j00 < end; j00 += SEL_THREADS * UNR) {
      int sv[UNR];
#pragma unroll
      for (int u = 0; u < UNR; u++) {
          const int j = j00 + u * SEL_THREADS + threadIdx.x;
          sv[u] = j < end ? sc.score(j) : -1;
      }
#pragma unroll
      for (int u = 0; u < UNR; u++) {
        const int j = j00 + u * SEL_THREADS + threadIdx.x;
        const int s = sv[u];
        const bool gt = s > T, eq = s == T;
        const unsigned int bg = __ballot_sync(0xffffffffu, gt), be = __ballot_sync(0xffffffffu, eq);
        if (lane == 0) {
            wgt[warp] = __popc(bg);
            weq[warp] = __popc(be);
        }
        __syncthreads();
        int g = gtRun + __popc(bg & lt), e = eqRun + __popc(be & lt), tg = 0, te = 0;
#pragma unroll
        for (int w = 0; w < SEL_THREADS / 32; w++) {
            if (w < warp) {
                g += wgt[w];
                e += weq[w];
            }
            tg += wgt[w];
            te += weq[w];
        }
        if (gt || (eq && e < r)) out[sink + g + min(e, r)] = j;
        gtRun += tg;
        eqRun += te;
        __syncthreads();
      }
    }
}

// ---------------------------------------------------------------------
// Fused counting select: one cooperative launch does what select_hist,
// select_threshold and select_compact do, with one barrier per list
// instead of two kernel boundaries, and without re-reading the key codes:
//   1. each block scores its chunk once, keeps a histogram in shared
//      memory, adds it to its list's global histogram, publishes its
//      suffix sums (keys at or above each score) and stores the scores as
//      8- or 16-bit values in a scratch buffer (L2-resident);
//   -- barrier of the list's blocks --
//   2. every block finds its list's threshold T and count r from the
//      global histogram, and the keys above and at T in the blocks before
//      it from their suffix sums (two loads per block);
//   3. each warp writes the keys of its contiguous part of the chunk (the
//      part it scored, so its own histogram row counts them) in position
//      order (no block barrier).
// All blocks must be resident at once: the host launches it with
// cuLaunchCooperativeKernel on a grid within the occupancy limit (or, under
// programmatic dependent launch, on such a grid after a kernel that waits
// on nothing).
// Nothing is reset at exit: a list's barrier state counts the arrivals of
// every launch (so launch e, read at entry as arrivals / blocks, waits for
// (e+1) * blocks), its global histogram has two copies used by the parity
// of e, and block 0 zeroes the copy the next launch will use.
// ghist and bar must be zero before the first launch.

#if SMAX <= 255
typedef unsigned char score_t;
#else
typedef unsigned short score_t;
#endif

#ifndef SEL_TRACE
#define SEL_TRACE 0  // 1: select_fused stamps its phases into sel_trace (a diagnostic)
#endif
#define SEL_TRACE_PTS 9
#if SEL_TRACE
#define SEL_TRACE_BLOCKS 16384
// sel_trace[block][p]: %globaltimer (ns) when thread 0 of block
// x + nblk*(list + NL*b) passed point p: 0 entry, 1 past pdl_wait, 2 query
// codes loaded, 3 chunk scored, 4 suffix sums published, 5 past the list
// barrier, 6 threshold known, 7 keys before the block's warps counted, 8
// compaction done (gpu.HashStep.SelectTrace).
__device__ unsigned long long sel_trace[SEL_TRACE_BLOCKS][SEL_TRACE_PTS];
__device__ __forceinline__ void sel_stamp(int p) {
    if (threadIdx.x == 0) {
        const unsigned int bi = (blockIdx.z * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x;
        unsigned long long t;
        asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
        if (bi < SEL_TRACE_BLOCKS) sel_trace[bi][p] = t;
    }
}
#define SEL_STAMP(p) sel_stamp(p)
#else
#define SEL_STAMP(p) ((void)0)
#endif
#ifndef SEL_VF
#define SEL_VF 4  // 16-byte code loads per thread per round of the one-word scoring
#endif
#ifndef SEL_EVICT
#define SEL_EVICT 1  // 1: the one-word scoring loads the key codes under an L2 evict-first policy
#endif

// ld_codes loads 16 bytes of key codes (read once by the select), under
// the L2 policy pol where SEL_EVICT.
__device__ __forceinline__ uint4 ld_codes(const uint4* p, unsigned long long pol) {
#if SEL_EVICT
    uint4 r;
    asm("ld.global.nc.L2::cache_hint.v4.u32 {%0, %1, %2, %3}, [%4], %5;"
        : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
        : "l"(p), "l"(pol));
    return r;
#else
    return __ldg(p);
#endif
}
#define BAR_STRIDE 32  // one 128-byte line of barrier state per list

#ifndef SEL_MLP
#define SEL_MLP 0  // 1: select_fused can run the query MLP itself (mlp != 0)
#endif

// Barrier state of one list (a 128-byte line of 32-bit words): words 0-1
// count arrivals over all launches (64-bit), word 4 counts query codes
// made (mlp).
#define BAR_MLP 4

// list_sync: the blocks of one list meet; arr counts the arrivals of every
// launch, so the barrier of launch e is complete at want = (e+1) * blocks.
// Thread 0 arrives with release semantics (its block's writes are ordered
// before it by __syncthreads) and polls with acquire: no second atomic
// publishes an epoch, so the last arrival is seen one round trip sooner.
__device__ __forceinline__ void list_sync(unsigned long long* arr, unsigned long long want) {
    __syncthreads();
    if (threadIdx.x == 0) {
        asm volatile("red.release.gpu.global.add.u64 [%0], 1;" ::"l"(arr) : "memory");
        for (;;) {
            unsigned long long v;
            asm volatile("ld.acquire.gpu.global.u64 %0, [%1];" : "=l"(v) : "l"(arr) : "memory");
            if (v >= want) break;
            __nanosleep(32);
        }
    }
    __syncthreads();
}

// select_fused: grid (nblk, NL, B), block SEL_THREADS, cooperative.
// ghist [B][NL][2][NBINS]; cum [B][NL][nblk][NBINS+1]; bar [B][NL][BAR_STRIDE];
// scr [B][NL][nblk][chunk], chunk a multiple of 16 (16-byte aligned per
// block); with smemScores the scores stay in the block's dynamic shared
// memory (chunk score_t's) instead.
#ifndef SEL_MINB
#define SEL_MINB 0  // > 0: blocks per SM the fused select's registers must allow
#endif
#if SEL_MINB > 0
extern "C" __global__ void __launch_bounds__(SEL_THREADS, SEL_MINB)
#else
extern "C" __global__ void __launch_bounds__(SEL_THREADS)
#endif
select_fused(unsigned int* qc, const unsigned int* __restrict__ kcodes, int N, int hq, int lo, int hi, int chunk,
             int heavy, int* __restrict__ ghist, int* __restrict__ cum, unsigned int* bar, score_t* __restrict__ scr,
             int sink, int local, int total, int* __restrict__ idx, const float* __restrict__ q,
             const float* __restrict__ qw, int mlp, int pfBytes, int smemScores) {
    __shared__ int hist[SEL_THREADS / 32][NBINS];  // per warp: the scores of its part of the chunk
    __shared__ int bh[NBINS];                       // the block's histogram, then the list's
    __shared__ int sred[4][SEL_THREADS / 32];
    __shared__ int sT, sR;
    __shared__ unsigned long long sE;
    extern __shared__ uint4 sScores[];
    SEL_STAMP(0);
    // Every block of this grid is resident once it gets here, so the
    // decode after it may start placing its blocks (they wait in pdl_wait).
    pdl_launch_dependents();
    const int x = blockIdx.x, list = blockIdx.y, b = blockIdx.z, nl = gridDim.y, nblk = gridDim.x;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const size_t L = (size_t)b * nl + list;
    int* out = idx + L * total;
    unsigned int* lbar = bar + L * BAR_STRIDE;
    score_t* my = smemScores ? (score_t*)sScores : scr + (L * nblk + x) * (size_t)chunk;
    for (int i = threadIdx.x; i < (SEL_THREADS / 32) * NBINS; i += SEL_THREADS) (&hist[0][0])[i] = 0;
    const int start = lo + x * chunk, end = min(start + chunk, hi);
    // Warp w scores, and later writes, the part [wa, wb) of the chunk: sub
    // keys each, a multiple of the compaction's 16-byte groups of a warp.
    constexpr int NW = SEL_THREADS / 32;
    constexpr int VEC = 16 / sizeof(score_t);
    constexpr int PER = 32 * VEC;
    const int n = max(end - start, 0);
    const int sub = ((n + NW - 1) / NW + PER - 1) / PER * PER;
    const int wa = start + min(warp * sub, n), wb = start + min(warp * sub + sub, n);
    Scorer sc;
    sc.keys(kcodes, b, list, hq, N);
    // 0. While the query codes are being made, ask L2 for (up to pfBytes
    // of) this block's key codes. They are made by the query MLP kernel
    // before this one, launched with programmatic dependent launch
    // (gpu.Ctx.LaunchPDL): pdl_wait awaits its completion; or (mlp) here.
    // Nothing shared with other kernels is touched before pdl_wait.
    if (pfBytes > 0) {
        for (int g = 0; g < KHEADS; g++) {
            const char* p0 = (const char*)(sc.kc[g] + (size_t)start * WORDS);
            const int nb = min(max(end - start, 0) * WORDS * 4, pfBytes);
            for (int off = threadIdx.x * 128; off < nb; off += SEL_THREADS * 128)
                asm volatile("prefetch.global.L2 [%0];" ::"l"(p0 + off));
        }
    }
    pdl_wait();
    SEL_STAMP(1);
    // the launch's epoch: arrivals of the launches before (this block has
    // not arrived, the launch before has completed)
    if (threadIdx.x == 0) sE = *(volatile unsigned long long*)lbar / (unsigned int)nblk;
    if (x == 0) {
        for (int i = threadIdx.x; i < sink; i += SEL_THREADS) out[i] = i;
        for (int i = threadIdx.x; i < local; i += SEL_THREADS) out[total - local + i] = N - local + i;
    }
#if SEL_MLP
    // (mlp) blocks x < SEL_HEADS run one head's query MLP each; the list's
    // blocks then wait for its SEL_HEADS codes (counter lbar[BAR_MLP]).
    if (mlp) {
        __shared__ float xq[IN_DIM];
        __syncthreads();
        const unsigned int e0 = (unsigned int)sE;
        for (int hh = x; hh < SEL_HEADS; hh += nblk) {
            const int h = list * SEL_HEADS + hh;
            __syncthreads();
            prefetch_map(qw + (size_t)h * MAP_FLOATS);
            for (int j = threadIdx.x; j < IN_DIM; j += SEL_THREADS) xq[j] = q[((size_t)b * hq + h) * IN_DIM + j];
            __syncthreads();
            mlp_code<SEL_THREADS / HID, 32>(xq, qw + (size_t)h * MAP_FLOATS, qc + ((size_t)b * hq + h) * WORDS);
            __threadfence();
            __syncthreads();
            if (threadIdx.x == 0) atomicAdd(lbar + BAR_MLP, 1u);
        }
        if (threadIdx.x == 0) {
            while ((int)(*(volatile unsigned int*)(lbar + BAR_MLP) - (e0 + 1) * SEL_HEADS) < 0) __nanosleep(32);
            __threadfence();
        }
    }
#endif
    sc.query(qc, b, list, hq);
    __syncthreads();
    SEL_STAMP(2);
    const unsigned long long epoch = sE;
    int* gh = ghist + (L * 2 + (epoch & 1)) * NBINS;
    if (x == 0) {  // the copy the next launch adds to (the last launch's, complete)
        int* nx = ghist + (L * 2 + ((epoch + 1) & 1)) * NBINS;
        for (int s = threadIdx.x; s < NBINS; s += SEL_THREADS) nx[s] = 0;
    }
    // 1. score once: histogram and scratch. Each warp scores its part;
    // full passes load all their keys' codes before scoring any (FU keys
    // per lane in flight); the tail pass checks bounds.
#if KHEADS == 1 && WORDS == 1
    // One code word per key: 16-byte loads of 4 keys each on the 4-aligned
    // middle [a0, a1) of the warp's part, in rounds of VF loads per lane
    // (predicated, so a part of up to 32*VF*4 keys takes one round trip),
    // the next round's loads issued before the current round is scored;
    // the head and tail (< 4 keys each) one per lane.
    {
        constexpr int VF = SEL_VF;
        constexpr int STEP = 32 * VF * 4;
        // keys whose code word is 16-byte aligned: (misalignment m of the
        // head's base + j) % 4 == 0 (N need not be a multiple of 4)
        const int m = (int)(((size_t)sc.kc[0] >> 2) & 3);
        const int a0 = min(wa + ((4 - ((m + wa) & 3)) & 3), wb);
        const int a1 = a0 + ((wb - a0) & ~3);
        const uint4* kv = (const uint4*)(sc.kc[0] + a0);  // 16-byte aligned
        // byte scores of 4 keys go out in one 4-byte store where aligned
        const bool pack = sizeof(score_t) == 1 && ((a0 - start) & 3) == 0;
#if SEL_EVICT
        const unsigned long long pol = l2_evict_first();
#else
        const unsigned long long pol = 0;
#endif
        uint4 k[VF];
#pragma unroll
        for (int u = 0; u < VF; u++)
            if (a0 + (u * 32 + lane) * 4 < a1) k[u] = ld_codes(kv + u * 32 + lane, pol);
        {
            const int j = lane < a0 - wa ? wa + lane : a1 + lane - (a0 - wa);
            if (j < wb && (j < a0 || j >= a1)) {
                const int sv = sc.score(j);
                atomicAdd(&hist[warp][sv], 1);
                my[j - start] = (score_t)sv;
            }
        }
        for (int r0 = a0; r0 < a1; r0 += STEP) {
            uint4 kn[VF];
#pragma unroll
            for (int u = 0; u < VF; u++)
                if (r0 + STEP + (u * 32 + lane) * 4 < a1) kn[u] = ld_codes(kv + (r0 + STEP - a0) / 4 + u * 32 + lane, pol);
#pragma unroll
            for (int u = 0; u < VF; u++) {
                const int jb = r0 + (u * 32 + lane) * 4 - start;
                if (jb + start >= a1) break;
                const unsigned int w[4] = {k[u].x, k[u].y, k[u].z, k[u].w};
                unsigned int packed = 0;
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int sv = sc.score_word(w[e], 0);
                    atomicAdd(&hist[warp][sv], 1);
                    if (pack)
                        packed |= (unsigned int)sv << (8 * e);
                    else
                        my[jb + e] = (score_t)sv;
                }
                if (pack) *(unsigned int*)(my + jb) = packed;
            }
#pragma unroll
            for (int u = 0; u < VF; u++) k[u] = kn[u];
        }
    }
#else
    {
        constexpr int FU = (16 / (KHEADS * WORDS)) < 1 ? 1 : (16 / (KHEADS * WORDS)) > 8 ? 8 : (16 / (KHEADS * WORDS));
        int j0 = wa;
        for (; j0 + 32 * FU <= wb; j0 += 32 * FU) {
            unsigned int k[FU][KHEADS][WORDS];
#pragma unroll
            for (int u = 0; u < FU; u++) sc.load(j0 + u * 32 + lane, k[u]);
#pragma unroll
            for (int u = 0; u < FU; u++) {
                const int sv = sc.score_of(k[u]);
                atomicAdd(&hist[warp][sv], 1);
                my[j0 + u * 32 + lane - start] = (score_t)sv;
            }
        }
        for (; j0 < wb; j0 += 32) {
            const int j = j0 + lane;
            if (j < wb) {
                const int sv = sc.score(j);
                atomicAdd(&hist[warp][sv], 1);
                my[j - start] = (score_t)sv;
            }
        }
    }
#endif
    __syncthreads();
    SEL_STAMP(3);
    for (int s = threadIdx.x; s < NBINS; s += SEL_THREADS) {
        int t = 0;
#pragma unroll
        for (int w = 0; w < SEL_THREADS / 32; w++) t += hist[w][s];
        bh[s] = t;
        if (t) atomicAdd(gh + s, t);
    }
    __syncthreads();
    // suffix sums of this block's histogram: thread t owns PB consecutive
    // bins from the top, then an exclusive scan of the threads' sums.
    {
        constexpr int PB = (NBINS + SEL_THREADS - 1) / SEL_THREADS;
        int* cb = cum + (L * nblk + x) * (NBINS + 1);
        const int hiBin = SMAX - threadIdx.x * PB;  // this thread's top bin
        int own = 0;
#pragma unroll
        for (int i = 0; i < PB; i++)
            if (hiBin - i >= 0) own += bh[hiBin - i];
        int inc = own;
        warp_scan(inc, lane);
        if (lane == 31) sred[0][warp] = inc;
        __syncthreads();
        int run = inc - own;
        for (int w = 0; w < warp; w++) run += sred[0][w];
#pragma unroll
        for (int i = 0; i < PB; i++)
            if (hiBin - i >= 0) {
                run += bh[hiBin - i];
                cb[hiBin - i] = run;  // keys scoring >= hiBin - i
            }
        if (threadIdx.x == 0) cb[NBINS] = 0;  // keys scoring > SMAX
    }
    SEL_STAMP(4);
    list_sync((unsigned long long*)lbar, (epoch + 1) * (unsigned int)nblk);
    SEL_STAMP(5);
    // 2. threshold: the list's histogram into shared memory (one round
    // trip), then warp 0 walks it from the top.
    int* lh = bh;  // published in cum: free for the list's histogram
    for (int s = threadIdx.x; s < NBINS; s += SEL_THREADS) lh[s] = *(volatile int*)(gh + s);
    __syncthreads();
    if (warp == 0) {
        int above = 0, T = SMAX + 1, r = 0;
        if (heavy > 0) {
            for (int top = SMAX; top >= 0; top -= 32) {
                const int s = top - lane;
                const int v = s >= 0 ? lh[s] : 0;
                int inc = v;  // inclusive scan from the top
                warp_scan(inc, lane);
                const int before = above + inc - v;
                const unsigned int hit = __ballot_sync(0xffffffffu, s >= 0 && before < heavy && heavy <= before + v);
                if (hit) {
                    const int src = __ffs(hit) - 1;
                    T = top - src;
                    r = heavy - __shfl_sync(0xffffffffu, before, src);
                    break;
                }
                above += __shfl_sync(0xffffffffu, inc, 31);
            }
        }
        if (lane == 0) {
            sT = T;
            sR = r;
        }
    }
    __syncthreads();
    const int T = sT, r = sR;
    SEL_STAMP(6);
    // 3. compaction.
    if (T <= SMAX) {
        // keys above and at T in the blocks before this one (their suffix
        // sums), and in this warp's part (its histogram row)
        int g = 0, e = 0, cg = 0;
        for (int y = threadIdx.x; y < x; y += SEL_THREADS) {
            const int* cy = cum + (L * nblk + y) * (NBINS + 1);
            const int ge = *(volatile int*)(cy + T), gt = *(volatile int*)(cy + T + 1);
            g += gt;
            e += ge - gt;
        }
        for (int s = T + 1 + lane; s < NBINS; s += 32) cg += hist[warp][s];
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) {
            g += __shfl_xor_sync(0xffffffffu, g, o);
            e += __shfl_xor_sync(0xffffffffu, e, o);
            cg += __shfl_xor_sync(0xffffffffu, cg, o);
        }
        const int ce = hist[warp][T];
        if (lane == 0) {
            sred[0][warp] = g;
            sred[1][warp] = e;
            sred[2][warp] = cg;
            sred[3][warp] = ce;
        }
        __syncthreads();
        int gRun = 0, eRun = 0;  // keys above and at T before this warp's part
#pragma unroll
        for (int w = 0; w < NW; w++) {
            gRun += sred[0][w] + (w < warp ? sred[2][w] : 0);
            eRun += sred[1][w] + (w < warp ? sred[3][w] : 0);
        }
        SEL_STAMP(7);
        // Each warp writes the keys of the part it scored in position
        // order; its keys above and at T are counted in its histogram row.
        // A lane takes VEC consecutive scores per 16-byte load (the chunk
        // and the parts are multiples of VEC).
        const int ws = wa - start, we = wb - start;
        // Masks of a lane's VEC scores (bit q: score q, valid ones only)
        // above and at T, four bytes or two halves a word at once. Where
        // every score is at most TOP (128 for bytes, 32768 for halves),
        // adding TOP - t to each field sets its top bit exactly when the
        // score is >= t (t >= 1; no carry leaves a valid field, and fields
        // past the valid ones, which may carry, come after them and are
        // masked off); otherwise (bytes up to 255) by __vcmpgtu4/__vcmpeq4.
        constexpr bool carry = sizeof(score_t) == 2 || SMAX <= 128;
        constexpr unsigned int TOPS = sizeof(score_t) == 1 ? 0x80808080u : 0x80008000u;
        constexpr unsigned int ONES = sizeof(score_t) == 1 ? 0x01010101u : 0x00010001u;
        constexpr int TOP = sizeof(score_t) == 1 ? 128 : 32768;
        const unsigned int addGe = T >= 1 ? (unsigned int)(TOP - T) * ONES : 0u;
        const unsigned int addGt = T < SMAX ? (unsigned int)(TOP - T - 1) * ONES : 0u;
        // The pass loads CU groups of a lane's scores before using any
        // (scratch scores are L2 round trips).
        constexpr int CU = 4;
        auto masks = [&](const uint4& u, int i0, unsigned int& mg, unsigned int& me) {
            mg = me = 0;
            if (i0 >= we) return;
            const unsigned int w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
            for (int c = 0; c < 4; c++) {
                unsigned int gt, eq;  // top bits of the fields above and at T
                if (carry) {
                    const unsigned int ge = T >= 1 ? (w[c] + addGe) & TOPS : TOPS;
                    gt = T < SMAX ? (w[c] + addGt) & TOPS : 0u;
                    eq = ge & ~gt;
                } else {
                    const unsigned int t4 = (unsigned int)T * 0x01010101u;
                    gt = __vcmpgtu4(w[c], t4) & TOPS;
                    eq = __vcmpeq4(w[c], t4) & TOPS;
                }
                if (sizeof(score_t) == 1) {
                    // bits 7, 15, 23, 31 -> 4 mask bits
                    mg |= ((gt >> 7) * 0x10204080u) >> 28 << (4 * c);
                    me |= ((eq >> 7) * 0x10204080u) >> 28 << (4 * c);
                } else {
                    mg |= ((gt >> 15) & 1u | gt >> 30) << (2 * c);
                    me |= ((eq >> 15) & 1u | eq >> 30) << (2 * c);
                }
            }
            const int valid = we - i0;
            if (valid < VEC) {
                mg &= (1u << valid) - 1;
                me &= (1u << valid) - 1;
            }
        };
        auto load = [&](int i00, uint4 (&u)[CU]) {
#pragma unroll
            for (int c = 0; c < CU; c++) {
                const int i0 = i00 + c * PER + lane * VEC;
                if (i0 < we) u[c] = *(const uint4*)(my + i0);
            }
        };
        if (cg > 0 || (ce > 0 && eRun < r)) {
            for (int i01 = ws; i01 < we; i01 += CU * PER) {
                uint4 u[CU];
                load(i01, u);
#pragma unroll
                for (int cu = 0; cu < CU; cu++) {
                    const int i0 = i01 + cu * PER + lane * VEC;
                    unsigned int mg, me;
                    masks(u[cu], i0, mg, me);
                    const int lg = __popc(mg), le = __popc(me);
                    int xg = lg, xe = le;  // inclusive scans over the lanes
                    warp_scan2(xg, xe, lane);
                    // keys above and at T before this lane's; the lane takes
                    // its keys above T and its first ke keys at T, and key q
                    // of them goes to slot sink + g + min(e, r) + (taken keys
                    // of the lane before q)
                    const int g = gRun + xg - lg, e = eRun + xe - le;
                    const int ke = min(max(r - e, 0), le);
                    unsigned int te = me;
                    if (ke < le) {  // the first ke of them (one lane of the list at most)
                        te = 0;
                        for (int c = 0; c < ke; c++) {
                            te |= me & (0u - me);
                            me &= me - 1;
                        }
                    }
                    unsigned int take = mg | te;
                    int slot = sink + g + min(e, r);
                    while (take) {
                        out[slot++] = start + i0 + __ffs(take) - 1;
                        take &= take - 1;
                    }
                    gRun += __shfl_sync(0xffffffffu, xg, 31);
                    eRun += __shfl_sync(0xffffffffu, xe, 31);
                }
            }
        }
    } else {
        SEL_STAMP(7);
    }
    SEL_STAMP(8);
}
