// Native CPU kernels of the VQ layer: the nearest-code search fused with the z_q gather and the squared
// error, and the one-pass straight-through backward. Loaded by cpu_extension.py through ctypes.
//
// A plain C ABI over raw pointers: no torch or Python headers, so a build takes a few seconds and needs
// only a C++17 compiler (OpenMP optional). All conventions (centring, the coefficients of the loss) are
// the caller's; these functions compute
//   search:   k_i = argmax_j (z_i · s_j − h_j)            (first j at exact ties, like torch.argmax)
//   forward:  z_q,i = c[k_i],  sse = Σ_i ‖z_i − z_q,i‖²   (accumulated in double)
//   backward: ∂z_i = g_i + a·(z_i − z_q,i),   ∂c_k = Σ_{i: k_i = k} ν·g_i + b·(z_q,i − z_i)   (i in order)
// Built with -ffp-contract=off: the backward rounds exactly like the torch path's separate mul and add,
// and the search's fused multiply-adds are the explicit fmadd() below.

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif
#ifdef _OPENMP
#include <omp.h>
#endif

namespace {

// One micro-tile of the search holds kTileRows rows × two SIMD vectors of codes in registers.
#if defined(__AVX512F__)
constexpr int kVecBytes = 64, kTileRows = 12;  // 24 accumulators of the 32 zmm registers
#elif defined(__AVX__)
constexpr int kVecBytes = 32, kTileRows = 6;   // 12 accumulators of the 16 ymm registers
#elif defined(__aarch64__)
constexpr int kVecBytes = 16, kTileRows = 12;  // 24 accumulators of the 32 NEON registers
#else
constexpr int kVecBytes = 16, kTileRows = 6;
#endif
// Rows per task: a multiple of every kTileRows; 96 × D stays in L1/L2 while the codes stream past it.
constexpr int64_t kBlockRows = 96;
// Codes per pass over a row block: their packed panels (~128 KiB) stay in L2 across the block's tiles.
constexpr int64_t kCodeBlockBytes = 128 * 1024;

template <typename T> struct Simd;
template <> struct Simd<float> {
  typedef float V __attribute__((vector_size(kVecBytes)));
  typedef int32_t M __attribute__((vector_size(kVecBytes)));
  typedef int32_t Index;
};
template <> struct Simd<double> {
  typedef double V __attribute__((vector_size(kVecBytes)));
  typedef int64_t M __attribute__((vector_size(kVecBytes)));
  typedef int64_t Index;
};

// a·b + c with one rounding where the ISA has a fused multiply-add (the search's GEMM).
template <typename V> inline V fmadd(V a, V b, V c) {
  constexpr bool f32 = sizeof(a[0]) == 4;
#if defined(__AVX512F__)
  if constexpr (f32) return (V)_mm512_fmadd_ps((__m512)a, (__m512)b, (__m512)c);
  else return (V)_mm512_fmadd_pd((__m512d)a, (__m512d)b, (__m512d)c);
#elif defined(__AVX__) && defined(__FMA__)
  if constexpr (f32) return (V)_mm256_fmadd_ps((__m256)a, (__m256)b, (__m256)c);
  else return (V)_mm256_fmadd_pd((__m256d)a, (__m256d)b, (__m256d)c);
#else
  (void)f32;
  return a * b + c;
#endif
}

// Lane-wise m ? a : b, m all-ones or all-zeros per lane.
template <typename V, typename M> inline V select(M m, V a, V b) { return (V)(((M)a & m) | ((M)b & ~m)); }

template <typename T> struct AlignedBuffer {
  T* data = nullptr;
  explicit AlignedBuffer(size_t count) {
    size_t bytes = ((count * sizeof(T) + 63) / 64) * 64;
    data = static_cast<T*>(std::aligned_alloc(64, bytes ? bytes : 64));
    if (!data) throw std::bad_alloc();
  }
  ~AlignedBuffer() { std::free(data); }
  AlignedBuffer(AlignedBuffer&& other) noexcept : data(other.data) { other.data = nullptr; }
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
};

// Runs f(task, worker) for task in [0, tasks) on up to `threads` workers; worker < threads.
template <typename F> void parallel_for(int64_t tasks, int threads, F&& f) {
  threads = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(threads, tasks)));
  if (threads == 1) {
    for (int64_t t = 0; t < tasks; ++t) f(t, 0);
    return;
  }
#ifdef _OPENMP
#pragma omp parallel num_threads(threads)
  {
    const int worker = omp_get_thread_num();
#pragma omp for schedule(dynamic, 1)
    for (int64_t t = 0; t < tasks; ++t) f(t, worker);
  }
#else
  std::atomic<int64_t> next{0};
  auto run = [&](int worker) {
    for (int64_t t = next.fetch_add(1); t < tasks; t = next.fetch_add(1)) f(t, worker);
  };
  std::vector<std::thread> pool;
  for (int w = 1; w < threads; ++w) pool.emplace_back(run, w);
  run(0);
  for (auto& th : pool) th.join();
#endif
}

// Search codes in panels of two vectors, [panel][D][2L], and the bias per panel [panel][2L]; padding
// codes are zero with an infinite bias, so they never win.
template <typename T> struct PackedCodes {
  static constexpr int kLanes = kVecBytes / sizeof(T), kPanel = 2 * kLanes;
  int64_t panels, d;
  AlignedBuffer<T> codes, bias;
  PackedCodes(const T* search_codes, const T* h, int64_t k, int64_t d_)
      : panels((k + kPanel - 1) / kPanel), d(d_), codes(panels * d_ * kPanel), bias(panels * kPanel) {
    for (int64_t p = 0; p < panels; ++p)
      for (int j = 0; j < kPanel; ++j) {
        const int64_t c = p * kPanel + j;
        for (int64_t e = 0; e < d; ++e) codes.data[(p * d + e) * kPanel + j] = c < k ? search_codes[c * d + e] : T(0);
        bias.data[p * kPanel + j] = c < k ? h[c] : std::numeric_limits<T>::infinity();
      }
  }
};

// Per-worker scratch of the search: the running best score and index of every row of a block, lane-wise,
// and a zero-padded copy of a last tile shorter than kTileRows.
template <typename T> struct SearchScratch {
  typedef typename Simd<T>::V V;
  typedef typename Simd<T>::M M;
  AlignedBuffer<V> best;
  AlignedBuffer<M> arg;
  AlignedBuffer<T> pad;
  explicit SearchScratch(int64_t d) : best(kBlockRows), arg(kBlockRows), pad(kTileRows * d) {}
};

// k_i = argmax_j (z_i · s_j − h_j) for the rows [0, rows) of z, written to out. GEMM tiles of
// kTileRows rows × one panel accumulate in registers; the bias and the running argmax are applied to
// the tile in registers, so no score is ever stored.
template <typename T>
void search_block(const T* z, int64_t rows, const PackedCodes<T>& pc, SearchScratch<T>& scratch, int64_t* out) {
  typedef typename Simd<T>::V V;
  typedef typename Simd<T>::M M;
  typedef typename Simd<T>::Index Index;
  constexpr int L = PackedCodes<T>::kLanes, P = PackedCodes<T>::kPanel;
  const int64_t d = pc.d;
  const int64_t tiles = (rows + kTileRows - 1) / kTileRows;
  const int64_t panels_per_pass = std::max<int64_t>(1, kCodeBlockBytes / (d * P * static_cast<int64_t>(sizeof(T))));
  M lane;
  for (int l = 0; l < L; ++l) lane[l] = static_cast<Index>(l);
  const V neg_inf = V{} - std::numeric_limits<T>::infinity();
  for (int64_t r = 0; r < tiles * kTileRows; ++r) {
    scratch.best.data[r] = neg_inf;
    scratch.arg.data[r] = M{};
  }
  for (int64_t p0 = 0; p0 < pc.panels; p0 += panels_per_pass) {
    const int64_t p1 = std::min(pc.panels, p0 + panels_per_pass);
    for (int64_t t = 0; t < tiles; ++t) {
      const int64_t r0 = t * kTileRows;
      const T* a = z + r0 * d;
      if (r0 + kTileRows > rows) {  // short last tile: zero rows, whose results are never read
        std::memset(scratch.pad.data, 0, sizeof(T) * kTileRows * d);
        std::memcpy(scratch.pad.data, a, sizeof(T) * (rows - r0) * d);
        a = scratch.pad.data;
      }
      V* best = scratch.best.data + r0;
      M* arg = scratch.arg.data + r0;
      for (int64_t p = p0; p < p1; ++p) {
        const T* b = pc.codes.data + p * d * P;
        V acc0[kTileRows], acc1[kTileRows];
#pragma GCC unroll 16
        for (int r = 0; r < kTileRows; ++r) acc0[r] = acc1[r] = V{};
        for (int64_t e = 0; e < d; ++e) {
          const V b0 = *reinterpret_cast<const V*>(b + e * P), b1 = *reinterpret_cast<const V*>(b + e * P + L);
#pragma GCC unroll 16
          for (int r = 0; r < kTileRows; ++r) {
            const V x = a[r * d + e] - V{};  // a broadcast (x − 0 = x exactly, so it folds away)
            acc0[r] = fmadd(x, b0, acc0[r]);
            acc1[r] = fmadd(x, b1, acc1[r]);
          }
        }
        const V h0 = *reinterpret_cast<const V*>(pc.bias.data + p * P);
        const V h1 = *reinterpret_cast<const V*>(pc.bias.data + p * P + L);
        const M i0 = lane + static_cast<Index>(p * P), i1 = i0 + static_cast<Index>(L);
#pragma GCC unroll 16
        for (int r = 0; r < kTileRows; ++r) {
          const V s0 = acc0[r] - h0, s1 = acc1[r] - h1;
          const M second = s1 > s0;  // strict: at a tie the lower code index (first half) stays
          const V s = select(second, s1, s0);
          const M i = select(second, i1, i0);
          const M better = s > best[r];
          best[r] = select(better, s, best[r]);
          arg[r] = select(better, i, arg[r]);
        }
      }
    }
  }
  for (int64_t r = 0; r < rows; ++r) {  // lanes -> one index per row; ties go to the lowest index
    T v = scratch.best.data[r][0];
    Index i = scratch.arg.data[r][0];
    for (int l = 1; l < L; ++l) {
      const T vl = scratch.best.data[r][l];
      const Index il = scratch.arg.data[r][l];
      if (vl > v || (vl == v && il < i)) v = vl, i = il;
    }
    out[r] = i;
  }
}

// Forward of one block of rows: search (when pc), check the indices, gather z_q, return Σ‖z − z_q‖².
template <typename T>
double forward_block(const T* z, int64_t rows, int64_t d, const T* codes, int64_t k, const PackedCodes<T>* pc,
                     SearchScratch<T>* scratch, int64_t* idx, T* z_q, bool want_sse, std::atomic<bool>& bad_index) {
  if (pc) search_block(z, rows, *pc, *scratch, idx);
  double sse = 0.0;
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t j = idx[r];
    if (j < 0 || j >= k) {
      bad_index.store(true, std::memory_order_relaxed);
      continue;
    }
    const T* c = codes + j * d;
    const T* x = z + r * d;
    if (z_q) std::memcpy(z_q + r * d, c, sizeof(T) * d);
    if (want_sse) {
      double row = 0.0;
      for (int64_t e = 0; e < d; ++e) {
        const double diff = static_cast<double>(x[e] - c[e]);
        row += diff * diff;
      }
      sse += row;
    }
  }
  return sse;
}

template <typename T>
int forward(const T* z, int64_t n, int64_t d, const T* codes, int64_t k, const T* search_codes, const T* bias,
            int64_t* indices, T* z_q, double* sse, int threads) {
  if (n == 0) {
    if (sse) *sse = 0.0;
    return 0;
  }
  const int64_t blocks = (n + kBlockRows - 1) / kBlockRows;
  threads = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(threads, blocks)));
  std::vector<PackedCodes<T>> pc;
  std::vector<SearchScratch<T>> scratch;
  if (search_codes) {
    pc.emplace_back(search_codes, bias, k, d);
    scratch.reserve(threads);
    for (int w = 0; w < threads; ++w) scratch.emplace_back(d);
  }
  std::vector<double> block_sse(blocks, 0.0);
  std::atomic<bool> bad_index{false};
  parallel_for(blocks, threads, [&](int64_t blk, int worker) {
    const int64_t r0 = blk * kBlockRows, rows = std::min(kBlockRows, n - r0);
    block_sse[blk] = forward_block(z + r0 * d, rows, d, codes, k, pc.empty() ? nullptr : &pc[0],
                                   pc.empty() ? nullptr : &scratch[worker], indices + r0, z_q ? z_q + r0 * d : nullptr,
                                   sse != nullptr, bad_index);
  });
  if (sse) {  // block order, whatever the thread count: the same sum every run
    double total = 0.0;
    for (double s : block_sse) total += s;
    *sse = total;
  }
  return bad_index.load() ? 1 : 0;
}

// One pass over all rows for the feature columns [e0, e1): ∂z, and the codebook rows added in row order.
template <typename T>
void backward_columns(const T* z, int64_t n, int64_t d, int64_t e0, int64_t e1, const T* codes, const int64_t* idx,
                      const T* g, int64_t g_row, int64_t g_col, T a, T b, T nu, T* grad_z, T* grad_codes) {
  const bool with_g = g && nu != T(0), with_b = b != T(0);
  for (int64_t i = 0; i < n; ++i) {
    const T* x = z + i * d;
    const T* q = codes + idx[i] * d;
    const T* gi = g ? g + i * g_row : nullptr;
    if (grad_z) {
      T* out = grad_z + i * d;
      if (a != T(0)) {
        if (gi && g_col == 1) {
          for (int64_t e = e0; e < e1; ++e) out[e] = a * (x[e] - q[e]) + gi[e];
        } else if (gi) {
          for (int64_t e = e0; e < e1; ++e) out[e] = a * (x[e] - q[e]) + gi[e * g_col];
        } else {
          for (int64_t e = e0; e < e1; ++e) out[e] = a * (x[e] - q[e]);
        }
      } else {
        for (int64_t e = e0; e < e1; ++e) out[e] = gi ? gi[e * g_col] : T(0);
      }
    }
    if (grad_codes) {
      T* acc = grad_codes + idx[i] * d;
      if (with_g && with_b && g_col == 1) {
        for (int64_t e = e0; e < e1; ++e) acc[e] += nu * gi[e] + b * (q[e] - x[e]);
      } else if (with_g && with_b) {
        for (int64_t e = e0; e < e1; ++e) acc[e] += nu * gi[e * g_col] + b * (q[e] - x[e]);
      } else if (with_g) {
        for (int64_t e = e0; e < e1; ++e) acc[e] += nu * gi[e * g_col];
      } else if (with_b) {
        for (int64_t e = e0; e < e1; ++e) acc[e] += b * (q[e] - x[e]);
      }
    }
  }
}

// The threads split the D feature columns (in whole cache lines), not the rows: every element of the
// codebook gradient is then summed over its rows in row order by one thread, so the result has the same
// bits for any thread count, equal to torch's index_add_, and no partial (K, D) buffers are needed.
template <typename T>
int backward(const T* z, int64_t n, int64_t d, const T* codes, int64_t k, const int64_t* idx, const T* g, int64_t g_row,
             int64_t g_col, double a, double b, double nu, T* grad_z, T* grad_codes, int threads) {
  for (int64_t i = 0; i < n; ++i)
    if (idx[i] < 0 || idx[i] >= k) return 1;
  if (grad_codes) std::memset(grad_codes, 0, sizeof(T) * k * d);
  constexpr int64_t line = 64 / sizeof(T);
  const int64_t lines = (d + line - 1) / line;
  const int64_t parts = std::max<int64_t>(1, std::min<int64_t>({static_cast<int64_t>(threads), lines, n}));
  parallel_for(parts, static_cast<int>(parts), [&](int64_t p, int) {
    const int64_t e0 = std::min(d, lines * p / parts * line), e1 = std::min(d, lines * (p + 1) / parts * line);
    backward_columns(z, n, d, e0, e1, codes, idx, g, g_row, g_col, static_cast<T>(a), static_cast<T>(b),
                     static_cast<T>(nu), grad_z, grad_codes);
  });
  return 0;
}

template <typename F> int guarded(F&& f) {
  try {
    return f();
  } catch (const std::bad_alloc&) {
    return 2;
  } catch (...) {
    return 3;
  }
}

}  // namespace

// Status codes: 0 ok, 1 an index outside [0, K), 2 out of memory, 3 other failure.
extern "C" {

int hf_vq_abi_version() { return 1; }

int hf_vq_simd_bytes() { return kVecBytes; }

int hf_vq_forward_f32(const float* z, int64_t n, int64_t d, const float* codes, int64_t k, const float* search_codes,
                      const float* bias, int64_t* indices, float* z_q, double* sse, int threads) {
  return guarded([&] { return forward(z, n, d, codes, k, search_codes, bias, indices, z_q, sse, threads); });
}

int hf_vq_forward_f64(const double* z, int64_t n, int64_t d, const double* codes, int64_t k, const double* search_codes,
                      const double* bias, int64_t* indices, double* z_q, double* sse, int threads) {
  return guarded([&] { return forward(z, n, d, codes, k, search_codes, bias, indices, z_q, sse, threads); });
}

int hf_vq_backward_f32(const float* z, int64_t n, int64_t d, const float* codes, int64_t k, const int64_t* indices,
                       const float* g, int64_t g_row, int64_t g_col, double a, double b, double nu, float* grad_z,
                       float* grad_codes, int threads) {
  return guarded([&] { return backward(z, n, d, codes, k, indices, g, g_row, g_col, a, b, nu, grad_z, grad_codes, threads); });
}

int hf_vq_backward_f64(const double* z, int64_t n, int64_t d, const double* codes, int64_t k, const int64_t* indices,
                       const double* g, int64_t g_row, int64_t g_col, double a, double b, double nu, double* grad_z,
                       double* grad_codes, int threads) {
  return guarded([&] { return backward(z, n, d, codes, k, indices, g, g_row, g_col, a, b, nu, grad_z, grad_codes, threads); });
}

}  // extern "C"
