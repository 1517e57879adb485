// Fused DyT, y = weight * tanh(alpha * x) + bias, forward and backward for CPU tensors.
//
// Called through ctypes by bio_speech_dyt/kernels/cpu_dyt.py, which allocates every output and
// passes raw pointers: no Python or Tensor API is compiled in (a build takes seconds, not the
// minute torch/extension.h costs), and torch is used only for its intra-op thread pool
// (at::parallel_for, so torch.set_num_threads applies).
//
// The input is a contiguous (B, C, S) array: channels-last inputs are (M, C, 1) and vectorise
// along the channels, channels-first inputs are (N, C, S) and vectorise along S. All math is
// fp32; x / y / dy / dx are fp32, bf16 or fp16.
//
// SIMD: GCC vector extensions (two vectors of 8 fp32 lanes a step) in functions built twice
// through target_clones, for x86-64-v3 (AVX2 + FMA) and the baseline, picked at load time by the
// CPU, so one binary runs on any x86-64 (on other architectures the baseline build alone).
//
// Gradient sums are deterministic whatever the thread count: the work is cut into a fixed grid of
// tasks (it does not depend on the threads, which take tasks as they come free), each task
// accumulates its own fp32 partial sums over at most kMaxRowsPerTask rows, and the partials are
// added in task order in double.

#include <ATen/Parallel.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <exception>
#include <stdexcept>
#include <string>
#include <vector>

#if defined(__x86_64__) && defined(__GNUC__)
#define BSD_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define BSD_CLONES
#endif
// Every helper that takes or returns vectors is inlined into the clones, by force: an out-of-line
// copy would be built for the baseline only, and an AVX caller passes vectors in registers where
// a baseline callee expects them in memory (the ABI change -Wpsabi warns of, silenced in CFLAGS).
#define BSD_INLINE inline __attribute__((always_inline))

namespace {

constexpr int64_t kLanes = 8;
constexpr int64_t kStep = 2 * kLanes;  // elements per step: two independent vectors, more work in flight
typedef float Vec __attribute__((vector_size(kLanes * sizeof(float))));
typedef uint32_t UVec __attribute__((vector_size(kLanes * sizeof(uint32_t))));

// About 1 MiB of fp32 per task (an L2's worth): large enough that a task's fixed costs vanish,
// small enough that 16k x 768 still makes dozens of tasks for the threads to share.
constexpr int64_t kTaskElems = int64_t{1} << 18;
// Longest run of fp32 additions into one partial sum (error <= kMaxRowsPerTask ulp of the sum
// of magnitudes; everything above is added in double).
constexpr int64_t kMaxRowsPerTask = 256;
// Channels-first rows are summed in blocks of this many elements, then the blocks added up.
constexpr int64_t kRowBlock = 512;
// Channels-last tasks cover at most this many channels (the partials of long rows stay small).
constexpr int64_t kMaxChannelsPerTask = 4096;

// Storage types, as bit patterns.
struct BF16 { uint16_t bits; };
struct FP16 { uint16_t bits; };

BSD_INLINE Vec splat(float v) { return Vec{} + v; }
BSD_INLINE Vec load(const float* p) { Vec v; std::memcpy(&v, p, sizeof v); return v; }
BSD_INLINE void store(float* p, Vec v) { std::memcpy(p, &v, sizeof v); }

// One step: 16 elements as two vectors. fp32 / fp16: elements 0-7 and 8-15. bf16: the 16 values
// read as 8 32-bit words, each an even element in its low half and an odd one in its high half,
// so the even and the odd elements are a shift and a mask away from fp32 (no shuffles); writing
// them back is the reverse. Per-channel arrays of a channels-last bf16 row are laid out the same
// way (see Params::slot).
struct Pair { Vec lo, hi; };

template <typename T> constexpr bool kInterleaved = false;
template <> constexpr bool kInterleaved<BF16> = true;

BSD_INLINE Pair load2(const float* p) { return {load(p), load(p + kLanes)}; }
BSD_INLINE void store2(float* p, Pair v) { store(p, v.lo); store(p + kLanes, v.hi); }

BSD_INLINE Pair load2(const BF16* p) {
  UVec u;
  std::memcpy(&u, p, sizeof u);
  return {(Vec)(u << 16), (Vec)(u & 0xffff0000u)};
}
// The bf16 in the high half of each word: round to nearest even, NaN to the quiet NaN 0x7fc0,
// as c10::BFloat16 (and .to()) do.
BSD_INLINE UVec round_to_bf16(Vec v) {
  const UVec u = (UVec)v;
  const UVec r = u + 0x7fffu + ((u >> 16) & 1u);
  return v != v ? UVec{} + 0x7fc00000u : r;
}
BSD_INLINE void store2(BF16* p, Pair v) {
  const UVec u = (round_to_bf16(v.lo) >> 16) | (round_to_bf16(v.hi) & 0xffff0000u);
  std::memcpy(p, &u, sizeof u);
}

// fp16 goes through c10's scalar conversions (fp16 is correct, not fast: no target needs it).
BSD_INLINE Pair load2(const FP16* p) {
  Pair v;
  for (int64_t i = 0; i < kLanes; ++i) {
    v.lo[i] = c10::detail::fp16_ieee_to_fp32_value(p[i].bits);
    v.hi[i] = c10::detail::fp16_ieee_to_fp32_value(p[kLanes + i].bits);
  }
  return v;
}
BSD_INLINE void store2(FP16* p, Pair v) {
  for (int64_t i = 0; i < kLanes; ++i) {
    p[i].bits = c10::detail::fp16_ieee_from_fp32_value(v.lo[i]);
    p[kLanes + i].bits = c10::detail::fp16_ieee_from_fp32_value(v.hi[i]);
  }
}

// The last n < kStep elements of a row: zero padding in, the first n elements out.
template <typename T>
BSD_INLINE Pair load2_n(const T* p, int64_t n) {
  T buf[kStep] = {};
  std::memcpy(buf, p, n * sizeof(T));
  return load2(buf);
}
template <typename T>
BSD_INLINE void store2_n(T* p, Pair v, int64_t n) {
  T buf[kStep];
  store2(buf, v);
  std::memcpy(p, buf, n * sizeof(T));
}

// A constant GCC cannot see through: it selects against a constant vector with compare + blend,
// against a variable with one vminps / vmaxps (same IEEE semantics, half the instructions).
BSD_INLINE float opaque(float v) {
  __asm__("" : "+r"(v));
  return v;
}

// tanh(z) = (z + z^3 P(z^2)) / Q(z^2), P of degree 3 and Q of degree 4: a [9/8] rational fitted for
// least maximum absolute error on [0, 9] (2e-8 in exact arithmetic; <= 4e-7 evaluated in fp32,
// with or without FMA, over 12M points of [0, 12]; relative error <= 2e-7 for tiny z). z^2 is
// clamped to 8.75^2, where the rational rounds to exactly 1 (tanh(8.75) = 1 - 5e-8), so beyond it
// |t| >= 1, and t is clamped to [-1, 1]: saturated inputs (inf included) give t = +-1 and
// 1 - t^2 = 0, as the float64 reference does. NaN propagates: a select whose comparison involves
// NaN keeps the NaN operand. (The numerator as z + z^3 P rather than z P' is one multiply-add
// shorter on the dependency chain, measured 3-7% faster.)
BSD_INLINE Vec tanh_approx(Vec z) {
  const Vec max_z2 = splat(opaque(8.75f * 8.75f)), one = splat(opaque(1.0f)), minus_one = splat(opaque(-1.0f));
  Vec z2 = z * z;
  z2 = max_z2 < z2 ? max_z2 : z2;
  Vec p = splat(1.3338097737e-08f) * z2 + 2.0596191462e-05f;
  p = p * z2 + 3.4947686363e-03f;
  p = p * z2 + 1.3380327821e-01f;
  Vec q = splat(7.7694977563e-07f) * z2 + 3.2843186636e-04f;
  q = q * z2 + 2.5873834267e-02f;
  q = q * z2 + 4.6713644266e-01f;
  q = q * z2 + 1.0f;
  Vec t = ((z * z2) * p + z) / q;
  t = one < t ? one : t;
  t = t < minus_one ? minus_one : t;
  return t;
}

// Per-channel parameters seen from a row: channels-last rows run along the channels (one value
// per element, from arrays in the row's storage order), channels-first rows hold one channel.
struct PerElement {
  const float* p;
  BSD_INLINE Pair at(int64_t i) const { return {load(p + i), load(p + i + kLanes)}; }
};
struct PerRow {
  Vec v;
  BSD_INLINE Pair at(int64_t) const { return {v, v}; }
};

// Gradient sums of a row: per channel into memory (channels-last, in the row's storage order),
// or into registers (channels-first). half: 0 for Pair::lo, 1 for Pair::hi.
struct SumsInMemory {
  float* dalpha;  // sum of dy (1 - t^2) x, per channel (weighted by weight at the end)
  float* dweight;  // sum of dy t
  float* dbias;  // sum of dy
  BSD_INLINE void add(int64_t i, int half, Vec da, Vec dw, Vec db) {
    i += half * kLanes;
    store(dalpha + i, load(dalpha + i) + da);
    store(dweight + i, load(dweight + i) + dw);
    store(dbias + i, load(dbias + i) + db);
  }
};
struct SumsInRegisters {
  Vec dalpha[2] = {}, dweight[2] = {}, dbias[2] = {};
  BSD_INLINE void add(int64_t, int half, Vec da, Vec dw, Vec db) {
    dalpha[half] += da;
    dweight[half] += dw;
    dbias[half] += db;
  }
};

template <typename T, typename P>
BSD_INLINE void forward_row(const T* x, T* y, int64_t n, Vec alpha, P w, P b) {
  auto step = [&](int64_t i, Pair xv) __attribute__((always_inline)) -> Pair {
    const Pair wv = w.at(i), bv = b.at(i);
    return {wv.lo * tanh_approx(alpha * xv.lo) + bv.lo, wv.hi * tanh_approx(alpha * xv.hi) + bv.hi};
  };
  int64_t i = 0;
  for (; i + kStep <= n; i += kStep) store2(y + i, step(i, load2(x + i)));
  if (i < n) store2_n(y + i, step(i, load2_n(x + i, n - i)), n - i);
}

// dx = dy (1 - t^2) alpha weight (wa = alpha weight); zero padding adds nothing to the sums.
template <typename Sums>
BSD_INLINE Vec backward_half(Vec xv, Vec g, Vec alpha, Vec wa, Sums& sums, int64_t i, int half) {
  const Vec t = tanh_approx(alpha * xv);
  const Vec gs = g * (1.0f - t * t);
  sums.add(i, half, gs * xv, g * t, g);
  return gs * wa;
}

template <typename T, typename P, typename Sums>
BSD_INLINE void backward_row(const T* x, const T* dy, T* dx, int64_t n, Vec alpha, P wa, Sums& sums) {
  auto step = [&](int64_t i, Pair xv, Pair g) __attribute__((always_inline)) -> Pair {
    const Pair w = wa.at(i);
    return {backward_half(xv.lo, g.lo, alpha, w.lo, sums, i, 0), backward_half(xv.hi, g.hi, alpha, w.hi, sums, i, 1)};
  };
  int64_t i = 0;
  for (; i + kStep <= n; i += kStep) store2(dx + i, step(i, load2(x + i), load2(dy + i)));
  if (i < n) store2_n(dx + i, step(i, load2_n(x + i, n - i), load2_n(dy + i, n - i)), n - i);
}

BSD_INLINE float horizontal_sum(const Vec (&v)[2]) {
  const Vec s = v[0] + v[1];
  return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

struct Shape {
  int64_t batch, channels, spatial;
  bool channels_last() const { return spatial == 1; }  // (B, C, 1) is the same memory either way
};

BSD_INLINE int64_t round_up(int64_t n, int64_t k) { return (n + k - 1) / k * k; }

// fp32 parameters, padded to a multiple of kStep: weight (1 if absent), bias (0 if absent),
// alpha * weight; in a channels-last row's storage order (slot).
struct Params {
  std::vector<float> weight, bias, alpha_weight;
  bool interleaved;
  Params(const float* w, const float* b, float alpha, Shape s, bool interleaved_storage)
      : interleaved(interleaved_storage && s.channels_last()) {
    const int64_t padded = round_up(s.channels, kStep);
    weight.assign(padded, 1.0f);
    bias.assign(padded, 0.0f);
    alpha_weight.resize(padded);
    for (int64_t c = 0; c < s.channels; ++c) {
      if (w) weight[slot(c)] = w[c];
      if (b) bias[slot(c)] = b[c];
    }
    for (int64_t c = 0; c < padded; ++c) alpha_weight[c] = alpha * weight[c];
  }
  // Where channel c's value sits: c, or for interleaved rows its place among the evens (first 8)
  // or the odds (last 8) of its group of 16.
  int64_t slot(int64_t c) const {
    return interleaved ? (c & ~(kStep - 1)) + (c & 1) * kLanes + ((c & (kStep - 1)) >> 1) : c;
  }
};

// Elements [begin, end) of the flat array, cut at row ends (a row: C channels, or S positions).
template <typename T>
BSD_CLONES void forward_range(const T* x, T* y, Shape s, float alpha, const Params* p, int64_t begin, int64_t end) {
  const int64_t row_len = s.channels_last() ? s.channels : s.spatial;
  const Vec a = splat(alpha);
  for (int64_t e = begin; e < end;) {
    const int64_t row = e / row_len, offset = e % row_len, n = std::min(end, (row + 1) * row_len) - e;
    if (s.channels_last()) {
      forward_row(x + e, y + e, n, a, PerElement{p->weight.data() + offset}, PerElement{p->bias.data() + offset});
    } else {
      const int64_t c = row % s.channels;
      forward_row(x + e, y + e, n, a, PerRow{splat(p->weight[c])}, PerRow{splat(p->bias[c])});
    }
    e += n;
  }
}

// The backward's fixed task grid. Channels-last: tasks are (row block, channel block) tiles;
// channels-first: (batch block, channel block) sets of rows. Each row block (batch block) owns
// one partial row of 3 x padded-C sums that its tasks fill, channel block by channel block.
struct Grid {
  int64_t rows_per_task, channels_per_task, row_blocks, channel_blocks, padded_channels;
  explicit Grid(Shape s) {
    padded_channels = round_up(s.channels, kStep);
    if (s.channels_last()) {
      channels_per_task = std::min(padded_channels, kMaxChannelsPerTask);
      rows_per_task = std::clamp<int64_t>(kTaskElems / channels_per_task, 1, kMaxRowsPerTask);
    } else {
      const int64_t rows = std::max<int64_t>(1, kTaskElems / s.spatial);  // (n, c) rows per task
      channels_per_task = std::min(s.channels, rows);
      rows_per_task = std::clamp<int64_t>(rows / channels_per_task, 1, kMaxRowsPerTask);
    }
    row_blocks = (s.batch + rows_per_task - 1) / rows_per_task;
    channel_blocks = (s.channels + channels_per_task - 1) / channels_per_task;
  }
  int64_t tasks() const { return row_blocks * channel_blocks; }
};

// One task of the grid: its rows' dx, and their sums added into its row block's partial row.
template <typename T>
BSD_CLONES void backward_task(const T* dy, const T* x, T* dx, Shape s, float alpha, const Params* p, const Grid* g,
                              float* partial, int64_t task) {
  const Vec a = splat(alpha);
  const int64_t cp = g->padded_channels;
  const int64_t rb = task / g->channel_blocks, cb = task % g->channel_blocks;
  const int64_t r0 = rb * g->rows_per_task, r1 = std::min(s.batch, r0 + g->rows_per_task);
  const int64_t c0 = cb * g->channels_per_task, c1 = std::min(s.channels, c0 + g->channels_per_task);
  float* sums = partial + rb * 3 * cp;
  if (s.channels_last()) {
    SumsInMemory acc{sums + c0, sums + cp + c0, sums + 2 * cp + c0};
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t at = r * s.channels + c0;
      backward_row(x + at, dy + at, dx + at, c1 - c0, a, PerElement{p->alpha_weight.data() + c0}, acc);
    }
    return;
  }
  for (int64_t r = r0; r < r1; ++r) {
    for (int64_t c = c0; c < c1; ++c) {
      const int64_t at = (r * s.channels + c) * s.spatial;
      const PerRow wa{splat(p->alpha_weight[c])};
      SumsInRegisters row;
      for (int64_t i = 0; i < s.spatial; i += kRowBlock) {
        SumsInRegisters block;
        backward_row(x + at + i, dy + at + i, dx + at + i, std::min(kRowBlock, s.spatial - i), a, wa, block);
        for (int half = 0; half < 2; ++half) row.add(0, half, block.dalpha[half], block.dweight[half], block.dbias[half]);
      }
      sums[c] += horizontal_sum(row.dalpha);
      sums[cp + c] += horizontal_sum(row.dweight);
      sums[2 * cp + c] += horizontal_sum(row.dbias);
    }
  }
}

// Runs task(i) for every i in [0, n) on torch's intra-op threads (one parallel region), handing
// the tasks out one at a time: on a loaded machine a descheduled thread holds up only the task it
// is in, where a static split (at::parallel_for's) leaves its whole share waiting. Which thread
// runs a task changes nothing in its result.
template <typename F>
void run_tasks(int64_t n, const F& task) {
  std::atomic<int64_t> next{0};
  at::parallel_for(0, std::min<int64_t>(n, at::get_num_threads()), 1, [&](int64_t, int64_t) {
    for (int64_t i; (i = next.fetch_add(1, std::memory_order_relaxed)) < n;) task(i);
  });
}

thread_local std::string last_error;

template <typename F>
int guarded(F&& f) noexcept {
  try {
    f();
    return 0;
  } catch (const std::exception& e) {
    last_error = e.what();
  } catch (...) {
    last_error = "unknown C++ exception";
  }
  return -1;
}

template <typename T>
void forward(const void* x, void* y, Shape s, float alpha, const float* w, const float* b) {
  const Params p(w, b, alpha, s, kInterleaved<T>);
  const int64_t numel = s.batch * s.channels * s.spatial;
  run_tasks((numel + kTaskElems - 1) / kTaskElems, [&](int64_t i) {
    forward_range(static_cast<const T*>(x), static_cast<T*>(y), s, alpha, &p, i * kTaskElems,
                  std::min(numel, (i + 1) * kTaskElems));
  });
}

// Gradients in fp32 (dweight / dbias may be null: not wanted), from double sums over the row blocks.
struct Grads {
  float* dalpha;
  float* dweight;
  float* dbias;
};

template <typename T>
void backward(const void* dy, const void* x, void* dx, Shape s, float alpha, const float* w, Grads out) {
  const Params p(w, nullptr, alpha, s, kInterleaved<T>);
  const Grid g(s);
  const int64_t cp = g.padded_channels;
  std::vector<float> partial(g.row_blocks * 3 * cp, 0.0f);
  run_tasks(g.tasks(), [&](int64_t task) {
    backward_task(static_cast<const T*>(dy), static_cast<const T*>(x), static_cast<T*>(dx), s, alpha, &p, &g,
                  partial.data(), task);
  });
  // Each channel summed over the row blocks in order, on this thread: 3 C x row blocks additions
  // (0.1 ms at 16384 x 768) are cheaper than another parallel region's fork / join under load.
  double dalpha = 0;
  for (int64_t c = 0; c < s.channels; ++c) {
    const int64_t at = p.slot(c);
    double da = 0, dw = 0, db = 0;
    for (int64_t rb = 0; rb < g.row_blocks; ++rb) {
      const float* sums = partial.data() + rb * 3 * cp;
      da += sums[at];
      dw += sums[cp + at];
      db += sums[2 * cp + at];
    }
    dalpha += da * p.weight[at];
    if (out.dweight) out.dweight[c] = static_cast<float>(dw);
    if (out.dbias) out.dbias[c] = static_cast<float>(db);
  }
  *out.dalpha = static_cast<float>(dalpha);
}

// Calls f with a value of the storage type that the dtype code names.
template <typename F>
void with_dtype(int dtype, F&& f) {
  switch (dtype) {
    case 0: return f(float{});
    case 1: return f(BF16{});
    case 2: return f(FP16{});
    default: throw std::invalid_argument("dtype code must be 0 (fp32), 1 (bf16) or 2 (fp16)");
  }
}

}  // namespace

extern "C" {

// dtype: 0 fp32, 1 bf16, 2 fp16. weight / bias: fp32 arrays of C, or null (1 / 0).
// Returns 0, or -1 with the reason in bsd_dyt_last_error().
int bsd_dyt_forward(int dtype, const void* x, void* y, int64_t batch, int64_t channels, int64_t spatial, float alpha,
                    const float* weight, const float* bias) noexcept {
  return guarded([&] {
    with_dtype(dtype, [&](auto tag) { forward<decltype(tag)>(x, y, Shape{batch, channels, spatial}, alpha, weight, bias); });
  });
}

// dalpha: 1 float; dweight / dbias: C floats each, or null when not wanted.
int bsd_dyt_backward(int dtype, const void* dy, const void* x, void* dx, int64_t batch, int64_t channels,
                     int64_t spatial, float alpha, const float* weight, float* dalpha, float* dweight,
                     float* dbias) noexcept {
  return guarded([&] {
    with_dtype(dtype, [&](auto tag) {
      backward<decltype(tag)>(dy, x, dx, Shape{batch, channels, spatial}, alpha, weight, Grads{dalpha, dweight, dbias});
    });
  });
}

const char* bsd_dyt_last_error() noexcept { return last_error.c_str(); }

}  // extern "C"
