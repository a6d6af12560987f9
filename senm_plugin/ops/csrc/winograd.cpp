// Winograd F(4x4, 3x3) transforms for channels-last float32 tensors on the CPU (Lavin & Gray, CVPR 2016).
//
// A 3x3, stride-1, zero-padded-by-1 convolution becomes, per 4x4 output tile:
//     V = B^T d B   (6x6 input patch d),   M_p = V_p U_p (one GEMM per p of 36),   Y = A^T M A (4x4 output).
// conv3x3 does all three per block of tiles, so a block's transformed data stays in the core's cache. The channel
// loops are innermost and contiguous in NHWC memory; the GEMM uses AVX2/FMA where compiled for it.
#include <torch/extension.h>

#include <ATen/Parallel.h>

#include <algorithm>
#include <vector>
#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#endif

namespace {

constexpr int64_t kCB = 8;  // channels per vector step; callers guarantee C % kCB == 0

// B^T d B of the 6x6 patch of tile (n, ty, tx) of x (N, H, W, C), written to v[p * sp + c] for p = 6 r + s.
void input_transform_tile(const float* x, float* v, int64_t H, int64_t W, int64_t C, int64_t sp, int64_t n,
                          int64_t ty, int64_t tx) {
  const int64_t y0 = ty * 4 - 1, x0 = tx * 4 - 1;
  for (int64_t c0 = 0; c0 < C; c0 += kCB) {
    float d[6][6][kCB];
    for (int r = 0; r < 6; ++r) {
      const int64_t yy = y0 + r;
      for (int s = 0; s < 6; ++s) {
        const int64_t xx = x0 + s;
        if (yy < 0 || yy >= H || xx < 0 || xx >= W) {
          for (int k = 0; k < kCB; ++k) d[r][s][k] = 0.f;
        } else {
          const float* src = x + ((n * H + yy) * W + xx) * C + c0;
          for (int k = 0; k < kCB; ++k) d[r][s][k] = src[k];
        }
      }
    }
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

// A^T M A + bias (optionally ReLU'd) from m[p * sp + c], written to the 4x4 tile (n, ty, tx) of y, cropped at
// the image border.
void output_transform_tile(const float* m, const float* bias, float* y, int64_t H, int64_t W, int64_t C,
                           int64_t sp, int64_t n, int64_t ty, int64_t tx, bool relu) {
  for (int64_t c0 = 0; c0 < C; c0 += kCB) {
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
    for (int r = 0; r < 4; ++r) {
      const int64_t yy = ty * 4 + r;
      if (yy >= H) break;
      float o[4][kCB];
      for (int k = 0; k < kCB; ++k) {
        const float e0 = a[r][0][k], e1 = a[r][1][k], e2 = a[r][2][k], e3 = a[r][3][k], e4 = a[r][4][k],
                    e5 = a[r][5][k];
        const float bk = bias ? bias[c0 + k] : 0.f;
        o[0][k] = e0 + e1 + e2 + e3 + e4 + bk;
        o[1][k] = e1 - e2 + 2.f * (e3 - e4) + bk;
        o[2][k] = e1 + e2 + 4.f * (e3 + e4) + bk;
        o[3][k] = e1 - e2 + 8.f * (e3 - e4) + e5 + bk;
      }
      for (int s = 0; s < 4; ++s) {
        const int64_t xx = tx * 4 + s;
        if (xx >= W) break;
        float* dst = y + ((n * H + yy) * W + xx) * C + c0;
        if (relu) {
          for (int k = 0; k < kCB; ++k) dst[k] = o[s][k] > 0.f ? o[s][k] : 0.f;
        } else {
          for (int k = 0; k < kCB; ++k) dst[k] = o[s][k];
        }
      }
    }
  }
}


// m[p] (rows x O) = v[p] (rows x C) u[p] (C x O) for the 36 p; v, m tile-blocked as (36, rows, C|O) contiguous.
template <int R>
void gemm_rows(const float* v, const float* u, float* m, int64_t C, int64_t O) {
#if defined(__AVX2__) && defined(__FMA__)
  if (O % 16 == 0) {
    for (int64_t o0 = 0; o0 < O; o0 += 16) {
      __m256 acc[R][2];
      for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
      for (int64_t c = 0; c < C; ++c) {
        const __m256 u0 = _mm256_loadu_ps(u + c * O + o0), u1 = _mm256_loadu_ps(u + c * O + o0 + 8);
        for (int r = 0; r < R; ++r) {
          const __m256 a = _mm256_broadcast_ss(v + r * C + c);
          acc[r][0] = _mm256_fmadd_ps(a, u0, acc[r][0]);
          acc[r][1] = _mm256_fmadd_ps(a, u1, acc[r][1]);
        }
      }
      for (int r = 0; r < R; ++r) {
        _mm256_storeu_ps(m + r * O + o0, acc[r][0]);
        _mm256_storeu_ps(m + r * O + o0 + 8, acc[r][1]);
      }
    }
    return;
  }
#endif
  for (int r = 0; r < R; ++r) {
    float* mr = m + r * O;
    std::fill(mr, mr + O, 0.f);
    for (int64_t c = 0; c < C; ++c) {
      const float a = v[r * C + c];
      const float* uc = u + c * O;
      for (int64_t o = 0; o < O; ++o) mr[o] += a * uc[o];
    }
  }
}

void gemm_block(const float* v, const float* u, float* m, int64_t rows, int64_t C, int64_t O) {
  constexpr int kR = 6;  // 6 rows x 16 columns: 12 accumulators, the most AVX2's 16 registers allow
  for (int p = 0; p < 36; ++p) {
    const float* vp = v + p * rows * C;
    const float* up = u + p * C * O;
    float* mp = m + p * rows * O;
    int64_t r = 0;
    for (; r + kR <= rows; r += kR) gemm_rows<kR>(vp + r * C, up, mp + r * O, C, O);
    switch (rows - r) {
      case 5: gemm_rows<5>(vp + r * C, up, mp + r * O, C, O); break;
      case 4: gemm_rows<4>(vp + r * C, up, mp + r * O, C, O); break;
      case 3: gemm_rows<3>(vp + r * C, up, mp + r * O, C, O); break;
      case 2: gemm_rows<2>(vp + r * C, up, mp + r * O, C, O); break;
      case 1: gemm_rows<1>(vp + r * C, up, mp + r * O, C, O); break;
      default: break;
    }
  }
}

void check_nhwc(const torch::Tensor& x, const char* name) {
  TORCH_CHECK(x.device().is_cpu() && x.scalar_type() == torch::kFloat, name, " must be a float32 CPU tensor");
  TORCH_CHECK(x.dim() == 4 && x.is_contiguous(), name, " must be a contiguous (N, H, W, C) tensor");
  TORCH_CHECK(x.size(3) % kCB == 0, name, " channels must be a multiple of ", kCB);
}

}  // namespace

// The whole convolution: y (N, H, W, O) = conv3x3(x (N, H, W, C)) + bias, optionally ReLU'd; u is (36, C, O).
// Each thread takes blocks of `block` tiles and keeps their transformed data in its own cache-sized buffers.
void conv3x3(const torch::Tensor& x, const torch::Tensor& u, const c10::optional<torch::Tensor>& bias,
             torch::Tensor& y, bool relu, int64_t block) {
  check_nhwc(x, "input");
  check_nhwc(y, "output");
  const int64_t N = x.size(0), H = x.size(1), W = x.size(2), C = x.size(3), O = y.size(3);
  TORCH_CHECK(y.size(0) == N && y.size(1) == H && y.size(2) == W, "output must have the input's N, H, W");
  TORCH_CHECK(u.device().is_cpu() && u.scalar_type() == torch::kFloat && u.is_contiguous() && u.dim() == 3 &&
                  u.size(0) == 36 && u.size(1) == C && u.size(2) == O,
              "u must be a contiguous float32 CPU (36, C, O) tensor");
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
  at::parallel_for(0, nblocks, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> v(36 * block * C), m(36 * block * O);
    for (int64_t k = begin; k < end; ++k) {
      const int64_t t0 = k * block, rows = std::min(block, T - t0);
      for (int64_t t = 0; t < rows; ++t) {
        const int64_t g = t0 + t, n = g / (th * tw), rem = g % (th * tw);
        input_transform_tile(xp, v.data() + t * C, H, W, C, rows * C, n, rem / tw, rem % tw);
      }
      gemm_block(v.data(), up, m.data(), rows, C, O);
      for (int64_t t = 0; t < rows; ++t) {
        const int64_t g = t0 + t, n = g / (th * tw), rem = g % (th * tw);
        output_transform_tile(m.data() + t * O, bp, yp, H, W, O, rows * O, n, rem / tw, rem % tw, relu);
      }
    }
  });
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("conv3x3", &conv3x3, "Winograd F(4x4,3x3) convolution of an NHWC tensor, transforms and GEMMs fused");
}
