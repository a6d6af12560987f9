// Winograd F(4x4, 3x3) transforms for channels-last float32 tensors on the CPU (Lavin & Gray, CVPR 2016).
//
// A 3x3, stride-1, zero-padded-by-1 convolution becomes, per 4x4 output tile:
//     V = B^T d B   (6x6 input patch d),   M_p = V_p U_p (one GEMM per p of 36),   Y = A^T M A (4x4 output).
// conv3x3 does all three per block of tiles, so a block's transformed data stays in the core's cache. The channel
// loops are innermost and contiguous in NHWC memory; the GEMM uses AVX2/FMA where compiled for it.
#include <torch/extension.h>

#include <ATen/Parallel.h>

#include <omp.h>

#include <algorithm>
#include <vector>
#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#endif

namespace {

constexpr int64_t kCB = 8;  // channels per vector step; transformed buffers pad the channels to a multiple of it

int64_t padded(int64_t c) { return (c + kCB - 1) / kCB * kCB; }

// Element strides of an NHWC view whose channels are contiguous (e.g. a channel slice of a channels-last tensor).
struct Strides {
  int64_t n, h, w;
  explicit Strides(const torch::Tensor& t) : n(t.stride(0)), h(t.stride(1)), w(t.stride(2)) {}
  int64_t at(int64_t b, int64_t y, int64_t x) const { return b * n + y * h + x * w; }
};

// The 6x6 patch of tile (n, ty, tx) of x (N, H, W, C), zero outside the image and beyond C, for channels
// [c0, c0 + kCB): d[r][s][k].
void load_patch(const float* x, const Strides& xs, float d[6][6][kCB], int64_t H, int64_t W, int64_t C, int64_t n,
                int64_t ty, int64_t tx, int64_t c0) {
  const int64_t y0 = ty * 4 - 1, x0 = tx * 4 - 1, cb = std::min(kCB, C - c0);
  for (int r = 0; r < 6; ++r) {
    const int64_t yy = y0 + r;
    for (int s = 0; s < 6; ++s) {
      const int64_t xx = x0 + s;
      if (yy < 0 || yy >= H || xx < 0 || xx >= W) {
        for (int k = 0; k < kCB; ++k) d[r][s][k] = 0.f;
      } else {
        const float* src = x + xs.at(n, yy, xx) + c0;
        if (cb == kCB) {
          for (int k = 0; k < kCB; ++k) d[r][s][k] = src[k];
        } else {
          for (int k = 0; k < kCB; ++k) d[r][s][k] = k < cb ? src[k] : 0.f;
        }
      }
    }
  }
}

// B^T d B of tile (n, ty, tx) of x (N, H, W, C), written to v[p * sp + c] (c < padded(C)) for p = 6 r + s.
void input_transform_tile(const float* x, const Strides& xs, float* v, int64_t H, int64_t W, int64_t C, int64_t sp,
                          int64_t n, int64_t ty, int64_t tx) {
  for (int64_t c0 = 0; c0 < C; c0 += kCB) {
    float d[6][6][kCB];
    load_patch(x, xs, d, H, W, C, n, ty, tx, c0);
    float b[6][6][kCB];  // B^T d, row transform
    for (int s = 0; s < 6; ++s) {
      for (int k = 0; k < kCB; ++k) {
        const float d0 = d[0][s][k], d1 = d[1][s][k], d2 = d[2][s][k], d3 = d[3][s][k], d4 = d[4][s][k],
                    d5 = d[5][s][k];
        b[0][s][k] = 4.f * d0 - 5.f * d2 + d4;
        b[1][s][k] = -4.f * (d1 + d2) + d3 + d4;
        b[2][s][k] = 4.f * (d1 - d2) - d3 + d4;
        b[3][s][k] = -2.f * (d1 - d3) - d2 + d4;
        b[4][s][k] = 2.f * (d1 - d3) - d2 + d4;
        b[5][s][k] = 4.f * d1 - 5.f * d3 + d5;
      }
    }
    for (int r = 0; r < 6; ++r) {  // (B^T d) B, column transform, written out
      float* out[6];
      for (int s = 0; s < 6; ++s) out[s] = v + (r * 6 + s) * sp + c0;
      for (int k = 0; k < kCB; ++k) {
        const float e0 = b[r][0][k], e1 = b[r][1][k], e2 = b[r][2][k], e3 = b[r][3][k], e4 = b[r][4][k],
                    e5 = b[r][5][k];
        out[0][k] = 4.f * e0 - 5.f * e2 + e4;
        out[1][k] = -4.f * (e1 + e2) + e3 + e4;
        out[2][k] = 4.f * (e1 - e2) - e3 + e4;
        out[3][k] = -2.f * (e1 - e3) - e2 + e4;
        out[4][k] = 2.f * (e1 - e3) - e2 + e4;
        out[5][k] = 4.f * e1 - 5.f * e3 + e5;
      }
    }
  }
}

// A^T M A + bias (optionally ReLU'd) from m[p * sp + c], written to the 4x4 tile (n, ty, tx) of y (N, H, W, C),
// cropped at the image border.
void output_transform_tile(const float* m, const float* bias, float* y, const Strides& ys, int64_t H, int64_t W,
                           int64_t C, int64_t sp, int64_t n, int64_t ty, int64_t tx, bool relu) {
  for (int64_t c0 = 0; c0 < C; c0 += kCB) {
    const int64_t cb = std::min(kCB, C - c0);
    float a[4][6][kCB];  // A^T M, row transform
    for (int s = 0; s < 6; ++s) {
      const float* col[6];
      for (int r = 0; r < 6; ++r) col[r] = m + (r * 6 + s) * sp + c0;
      for (int k = 0; k < kCB; ++k) {
        const float m0 = col[0][k], m1 = col[1][k], m2 = col[2][k], m3 = col[3][k], m4 = col[4][k],
                    m5 = col[5][k];
        a[0][s][k] = m0 + m1 + m2 + m3 + m4;
        a[1][s][k] = m1 - m2 + 2.f * (m3 - m4);
        a[2][s][k] = m1 + m2 + 4.f * (m3 + m4);
        a[3][s][k] = m1 - m2 + 8.f * (m3 - m4) + m5;
      }
    }
    float bk[kCB];
    for (int k = 0; k < kCB; ++k) bk[k] = bias && k < cb ? bias[c0 + k] : 0.f;
    for (int r = 0; r < 4; ++r) {
      const int64_t yy = ty * 4 + r;
      if (yy >= H) break;
      float o[4][kCB];
      for (int k = 0; k < kCB; ++k) {
        const float e0 = a[r][0][k], e1 = a[r][1][k], e2 = a[r][2][k], e3 = a[r][3][k], e4 = a[r][4][k],
                    e5 = a[r][5][k];
        o[0][k] = e0 + e1 + e2 + e3 + e4 + bk[k];
        o[1][k] = e1 - e2 + 2.f * (e3 - e4) + bk[k];
        o[2][k] = e1 + e2 + 4.f * (e3 + e4) + bk[k];
        o[3][k] = e1 - e2 + 8.f * (e3 - e4) + e5 + bk[k];
      }
      for (int s = 0; s < 4; ++s) {
        const int64_t xx = tx * 4 + s;
        if (xx >= W) break;
        float* dst = y + ys.at(n, yy, xx) + c0;
        if (relu) {
          for (int k = 0; k < kCB; ++k) o[s][k] = o[s][k] > 0.f ? o[s][k] : 0.f;
        }
        if (cb == kCB) {
          for (int k = 0; k < kCB; ++k) dst[k] = o[s][k];
        } else {
          for (int k = 0; k < cb; ++k) dst[k] = o[s][k];
        }
      }
    }
  }
}

// A g A^T of the 4x4 tile (n, ty, tx) of an output gradient g (N, H, W, C) (zero beyond the image), written to
// m[p * sp + c]: the gradient of the transformed product M, since y = A^T M A.
void grad_transform_tile(const float* g, const Strides& gs, float* m, int64_t H, int64_t W, int64_t C, int64_t sp,
                         int64_t n, int64_t ty, int64_t tx) {
  for (int64_t c0 = 0; c0 < C; c0 += kCB) {
    const int64_t cb = std::min(kCB, C - c0);
    float d[4][4][kCB];
    for (int r = 0; r < 4; ++r) {
      const int64_t yy = ty * 4 + r;
      for (int s = 0; s < 4; ++s) {
        const int64_t xx = tx * 4 + s;
        const bool inside = yy < H && xx < W;
        const float* src = inside ? g + gs.at(n, yy, xx) + c0 : g;
        for (int k = 0; k < kCB; ++k) d[r][s][k] = inside && k < cb ? src[k] : 0.f;
      }
    }
    float a[6][4][kCB];  // A g, row transform; A = (A^T)^T has rows (1,0,0,0), (1,1,1,1), (1,-1,1,-1),
                         // (1,2,4,8), (1,-2,4,-8), (0,0,0,1)
    for (int s = 0; s < 4; ++s) {
      for (int k = 0; k < kCB; ++k) {
        const float g0 = d[0][s][k], g1 = d[1][s][k], g2 = d[2][s][k], g3 = d[3][s][k];
        a[0][s][k] = g0;
        a[1][s][k] = g0 + g1 + g2 + g3;
        a[2][s][k] = g0 - g1 + g2 - g3;
        a[3][s][k] = g0 + 2.f * g1 + 4.f * g2 + 8.f * g3;
        a[4][s][k] = g0 - 2.f * g1 + 4.f * g2 - 8.f * g3;
        a[5][s][k] = g3;
      }
    }
    for (int r = 0; r < 6; ++r) {
      float* out[6];
      for (int s = 0; s < 6; ++s) out[s] = m + (r * 6 + s) * sp + c0;
      for (int k = 0; k < kCB; ++k) {
        const float e0 = a[r][0][k], e1 = a[r][1][k], e2 = a[r][2][k], e3 = a[r][3][k];
        out[0][k] = e0;
        out[1][k] = e0 + e1 + e2 + e3;
        out[2][k] = e0 - e1 + e2 - e3;
        out[3][k] = e0 + 2.f * e1 + 4.f * e2 + 8.f * e3;
        out[4][k] = e0 - 2.f * e1 + 4.f * e2 - 8.f * e3;
        out[5][k] = e3;
      }
    }
  }
}

// out[i][o] (+)= sum_k a[i * a_row + k * a_k] b[k * O + o] for R rows i, all O (a multiple of kCB) columns o: the
// register-blocked micro-kernel of both GEMMs. 6 rows x 16 columns keep 12 accumulators, the most AVX2's 16
// registers allow.
template <int R>
void micro_gemm(const float* a, int64_t a_row, int64_t a_k, const float* b, int64_t K, float* out, int64_t O,
                bool accumulate) {
  int64_t o0 = 0;
#if defined(__AVX2__) && defined(__FMA__)
  for (; o0 + 16 <= O; o0 += 16) {
    __m256 acc[R][2];
    for (int i = 0; i < R; ++i) {
      acc[i][0] = accumulate ? _mm256_loadu_ps(out + i * O + o0) : _mm256_setzero_ps();
      acc[i][1] = accumulate ? _mm256_loadu_ps(out + i * O + o0 + 8) : _mm256_setzero_ps();
    }
    for (int64_t k = 0; k < K; ++k) {
      const __m256 b0 = _mm256_loadu_ps(b + k * O + o0), b1 = _mm256_loadu_ps(b + k * O + o0 + 8);
      for (int i = 0; i < R; ++i) {
        const __m256 x = _mm256_broadcast_ss(a + i * a_row + k * a_k);
        acc[i][0] = _mm256_fmadd_ps(x, b0, acc[i][0]);
        acc[i][1] = _mm256_fmadd_ps(x, b1, acc[i][1]);
      }
    }
    for (int i = 0; i < R; ++i) {
      _mm256_storeu_ps(out + i * O + o0, acc[i][0]);
      _mm256_storeu_ps(out + i * O + o0 + 8, acc[i][1]);
    }
  }
#endif
  for (int i = 0; i < R; ++i) {
    for (int64_t o = o0; o < O; o += kCB) {
      float acc[kCB];
      for (int j = 0; j < kCB; ++j) acc[j] = accumulate ? out[i * O + o + j] : 0.f;
      for (int64_t k = 0; k < K; ++k) {
        const float x = a[i * a_row + k * a_k];
        for (int j = 0; j < kCB; ++j) acc[j] += x * b[k * O + o + j];
      }
      for (int j = 0; j < kCB; ++j) out[i * O + o + j] = acc[j];
    }
  }
}

// The n rows of out (n x O) (+)= A (n x K, strides a_row, a_k) b (K x O), six rows at a time.
void gemm(const float* a, int64_t a_row, int64_t a_k, int64_t n, const float* b, int64_t K, float* out, int64_t O,
          bool accumulate) {
  int64_t i = 0;
  for (; i + 6 <= n; i += 6) micro_gemm<6>(a + i * a_row, a_row, a_k, b, K, out + i * O, O, accumulate);
  for (; i < n; ++i) micro_gemm<1>(a + i * a_row, a_row, a_k, b, K, out + i * O, O, accumulate);
}

// m[p] (rows x O) = v[p] (rows x C) u[p] (C x O) for the 36 p; v, m tile-blocked as (36, rows, C|O) contiguous.
void gemm_block(const float* v, const float* u, float* m, int64_t rows, int64_t C, int64_t O) {
  for (int p = 0; p < 36; ++p) gemm(v + p * rows * C, C, 1, rows, u + p * C * O, C, m + p * rows * O, O, false);
}

// du[p] (C x O) += v[p]^T (C x rows) m[p] (rows x O) for the 36 p: the weight gradient's rank-`rows` update.
void rank_update_block(const float* v, const float* m, float* du, int64_t rows, int64_t C, int64_t O) {
  for (int p = 0; p < 36; ++p) gemm(v + p * rows * C, 1, C, C, m + p * rows * O, rows, du + p * C * O, O, true);
}

void check_nhwc(const torch::Tensor& x, const char* name) {
  TORCH_CHECK(x.device().is_cpu() && x.scalar_type() == torch::kFloat, name, " must be a float32 CPU tensor");
  TORCH_CHECK(x.dim() == 4 && (x.stride(3) == 1 || x.size(3) == 1), name,
              " must be an (N, H, W, C) tensor with contiguous channels");
}

void check_u(const torch::Tensor& u, int64_t C, int64_t O) {
  TORCH_CHECK(u.device().is_cpu() && u.scalar_type() == torch::kFloat && u.is_contiguous() && u.dim() == 3 &&
                  u.size(0) == 36 && u.size(1) == padded(C) && u.size(2) == padded(O),
              "u must be a contiguous float32 CPU (36, C, O) tensor, C and O padded to multiples of ", kCB);
}

}  // namespace

// The whole convolution: y (N, H, W, O) = conv3x3(x (N, H, W, C)) + bias, optionally ReLU'd; u is
// (36, padded C, padded O). Each thread takes blocks of `block` tiles and keeps their transformed data in its own
// cache-sized buffers.
void conv3x3(const torch::Tensor& x, const torch::Tensor& u, const c10::optional<torch::Tensor>& bias,
             torch::Tensor& y, bool relu, int64_t block) {
  check_nhwc(x, "input");
  check_nhwc(y, "output");
  const int64_t N = x.size(0), H = x.size(1), W = x.size(2), C = x.size(3), O = y.size(3);
  const int64_t Cp = padded(C), Op = padded(O);
  TORCH_CHECK(y.size(0) == N && y.size(1) == H && y.size(2) == W, "output must have the input's N, H, W");
  check_u(u, C, O);
  TORCH_CHECK(block > 0, "block must be positive");
  const float* bp = nullptr;
  torch::Tensor b;
  if (bias.has_value() && bias->defined()) {
    b = bias->contiguous();
    TORCH_CHECK(b.device().is_cpu() && b.scalar_type() == torch::kFloat && b.numel() == O,
                "bias must hold O float32 CPU values");
    bp = b.data_ptr<float>();
  }
  const int64_t th = (H + 3) / 4, tw = (W + 3) / 4, T = N * th * tw, nblocks = (T + block - 1) / block;
  const float* xp = x.data_ptr<float>();
  const float* up = u.data_ptr<float>();
  float* yp = y.data_ptr<float>();
  const Strides xs(x), ys(y);
  at::parallel_for(0, nblocks, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> v(36 * block * Cp), m(36 * block * Op);
    for (int64_t k = begin; k < end; ++k) {
      const int64_t t0 = k * block, rows = std::min(block, T - t0);
      for (int64_t t = 0; t < rows; ++t) {
        const int64_t g = t0 + t, n = g / (th * tw), rem = g % (th * tw);
        input_transform_tile(xp, xs, v.data() + t * Cp, H, W, C, rows * Cp, n, rem / tw, rem % tw);
      }
      gemm_block(v.data(), up, m.data(), rows, Cp, Op);
      for (int64_t t = 0; t < rows; ++t) {
        const int64_t g = t0 + t, n = g / (th * tw), rem = g % (th * tw);
        output_transform_tile(m.data() + t * Op, bp, yp, ys, H, W, O, rows * Op, n, rem / tw, rem % tw, relu);
      }
    }
  });
}

// Gradient of the transformed weights: dU (36, padded C, padded O) = sum over tiles of V^T dM, from the input
// x (N, H, W, C) and the output gradient gy (N, H, W, O). The weight gradient is G^T dU G (done by the caller).
torch::Tensor conv3x3_grad_u(const torch::Tensor& x, const torch::Tensor& gy, int64_t block) {
  check_nhwc(x, "input");
  check_nhwc(gy, "output gradient");
  const int64_t N = x.size(0), H = x.size(1), W = x.size(2), C = x.size(3), O = gy.size(3);
  TORCH_CHECK(gy.size(0) == N && gy.size(1) == H && gy.size(2) == W, "output gradient must have the input's N, H, W");
  TORCH_CHECK(block > 0, "block must be positive");
  const int64_t Cp = padded(C), Op = padded(O);
  const int64_t th = (H + 3) / 4, tw = (W + 3) / 4, T = N * th * tw, nblocks = (T + block - 1) / block;
  // one accumulator per thread; omp_get_max_threads() too in case this module's OpenMP is not torch's
  const int64_t nthreads = std::max<int64_t>(at::get_num_threads(), omp_get_max_threads());
  auto partial = torch::zeros({nthreads, 36, Cp, Op}, x.options());
  const float* xp = x.data_ptr<float>();
  const float* gp = gy.data_ptr<float>();
  const Strides xs(x), gs(gy);
  float* pp = partial.data_ptr<float>();
  at::parallel_for(0, nblocks, 1, [&](int64_t begin, int64_t end) {
    const int64_t tid = at::get_thread_num();
    TORCH_CHECK(tid >= 0 && tid < nthreads, "conv3x3_grad_u: unexpected thread number ", tid);
    float* du = pp + tid * 36 * Cp * Op;
    std::vector<float> v(36 * block * Cp), m(36 * block * Op);
    for (int64_t k = begin; k < end; ++k) {
      const int64_t t0 = k * block, rows = std::min(block, T - t0);
      for (int64_t t = 0; t < rows; ++t) {
        const int64_t g = t0 + t, n = g / (th * tw), rem = g % (th * tw);
        input_transform_tile(xp, xs, v.data() + t * Cp, H, W, C, rows * Cp, n, rem / tw, rem % tw);
        grad_transform_tile(gp, gs, m.data() + t * Op, H, W, O, rows * Op, n, rem / tw, rem % tw);
      }
      rank_update_block(v.data(), m.data(), du, rows, Cp, Op);
    }
  });
  return nthreads == 1 ? partial[0] : partial.sum(0);
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("conv3x3", &conv3x3, "Winograd F(4x4,3x3) convolution of an NHWC tensor, transforms and GEMMs fused");
  m.def("conv3x3_grad_u", &conv3x3_grad_u, "Gradient of the Winograd-transformed weights of conv3x3");
}
