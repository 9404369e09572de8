// The CPU kernels of multi-scale deformable attention (tensors: see ms_deform_attn.h), included
// once per instruction set by ms_deform_attn_cpu.cpp (baseline) and ms_deform_attn_cpu_avx2.cpp,
// each time inside its own namespace MS_DEFORM_ATTN_CPU_ISA.
//
// Forward runs in parallel over (batch, query) rows; each writes only its own output row, so no
// atomics are needed. Backward runs in parallel over (batch, head) pairs with the queries inner:
// a pair owns the slice grad_value[b, :, h, :], so the scatter of value gradients needs neither
// atomics nor per-thread buffers. Channel loops are SIMD loops; half and bfloat16 accumulate in
// float.
//
// A file that compiles these kernels for another instruction set includes the headers below
// before its target pragma, so that inline library code keeps the baseline instruction set.
#include "ms_deform_attn.h"
#include "ms_deform_attn_bilinear.h"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <vector>

#ifndef MS_DEFORM_ATTN_CPU_ISA
#error "Define MS_DEFORM_ATTN_CPU_ISA (the kernels' namespace) before including this file."
#endif

namespace mask2former {
namespace MS_DEFORM_ATTN_CPU_ISA {
namespace {

// acc[c] += sum_k coef[k] * rows[k][c] over the C channels.
template <typename scalar_t, typename opmath_t>
inline void accumulate_rows(opmath_t* __restrict acc, const scalar_t* const* rows,
                            const opmath_t* coef, int64_t channels) {
  const scalar_t* __restrict r0 = rows[0];
  const scalar_t* __restrict r1 = rows[1];
  const scalar_t* __restrict r2 = rows[2];
  const scalar_t* __restrict r3 = rows[3];
  const opmath_t c0 = coef[0], c1 = coef[1], c2 = coef[2], c3 = coef[3];
#pragma omp simd
  for (int64_t c = 0; c < channels; ++c) {
    acc[c] += c0 * static_cast<opmath_t>(r0[c]) + c1 * static_cast<opmath_t>(r1[c]) +
              c2 * static_cast<opmath_t>(r2[c]) + c3 * static_cast<opmath_t>(r3[c]);
  }
}

// One pass over the C channels of the four corners of a sample: returns in dots[k] the dot product
// of the output gradient with corner k's value, and adds coef[k] * grad to corner k's value
// gradient. The four gradient rows are distinct.
template <typename scalar_t, typename opmath_t>
inline void backward_rows(const opmath_t* __restrict grad, const scalar_t* const* rows,
                          opmath_t* const* grad_rows, const opmath_t* coef, opmath_t* dots,
                          int64_t channels) {
  const scalar_t* __restrict r0 = rows[0];
  const scalar_t* __restrict r1 = rows[1];
  const scalar_t* __restrict r2 = rows[2];
  const scalar_t* __restrict r3 = rows[3];
  opmath_t* __restrict g0 = grad_rows[0];
  opmath_t* __restrict g1 = grad_rows[1];
  opmath_t* __restrict g2 = grad_rows[2];
  opmath_t* __restrict g3 = grad_rows[3];
  const opmath_t c0 = coef[0], c1 = coef[1], c2 = coef[2], c3 = coef[3];
  opmath_t d0 = 0, d1 = 0, d2 = 0, d3 = 0;
#pragma omp simd reduction(+ : d0, d1, d2, d3)
  for (int64_t c = 0; c < channels; ++c) {
    const opmath_t g = grad[c];
    d0 += g * static_cast<opmath_t>(r0[c]);
    d1 += g * static_cast<opmath_t>(r1[c]);
    d2 += g * static_cast<opmath_t>(r2[c]);
    d3 += g * static_cast<opmath_t>(r3[c]);
    g0[c] += c0 * g;
    g1[c] += c1 * g;
    g2[c] += c2 * g;
    g3[c] += c3 * g;
  }
  dots[0] = d0;
  dots[1] = d1;
  dots[2] = d2;
  dots[3] = d3;
}

// How many queries ahead the backward pass prefetches its per-query inputs.
constexpr int64_t kPrefetchQueries = 4;

// Prefetches the cache lines of data[0:count] for reading.
template <typename scalar_t>
inline void prefetch_range(const scalar_t* data, int64_t count) {
  const char* begin = reinterpret_cast<const char*>(data);
  const char* end = reinterpret_cast<const char*>(data + count);
  for (const char* line = begin; line < end; line += 64) {
    __builtin_prefetch(line);
  }
}

template <typename scalar_t>
void forward_kernel(const scalar_t* value, const int64_t* shapes, const int64_t* starts,
                    const scalar_t* locations, const scalar_t* weights, scalar_t* output,
                    const MSDeformAttnSizes& s) {
  using opmath_t = at::opmath_type<scalar_t>;
  const int64_t channels = s.channels;
  const int64_t position_stride = s.num_heads * channels;  // value: next position, same head
  const int64_t samples_per_head = s.num_levels * s.num_points;
  at::parallel_for(0, s.batch * s.len_q, 16, [&](int64_t begin, int64_t end) {
    std::vector<opmath_t> acc(channels);
    const std::vector<scalar_t> zero_row(channels, scalar_t(0));
    for (int64_t bq = begin; bq < end; ++bq) {
      const scalar_t* value_b = value + (bq / s.len_q) * s.len_in * position_stride;
      for (int64_t head = 0; head < s.num_heads; ++head) {
        const int64_t bqh = bq * s.num_heads + head;
        std::fill(acc.begin(), acc.end(), opmath_t(0));
        for (int64_t level = 0; level < s.num_levels; ++level) {
          const int64_t height = shapes[2 * level];
          const int64_t width = shapes[2 * level + 1];
          const scalar_t* value_l = value_b + starts[level] * position_stride + head * channels;
          for (int64_t point = 0; point < s.num_points; ++point) {
            const int64_t sample = bqh * samples_per_head + level * s.num_points + point;
            BilinearCorners<opmath_t> corners;
            if (!bilinear_corners<opmath_t>(locations[2 * sample], locations[2 * sample + 1],
                                            height, width, corners)) {
              continue;
            }
            const opmath_t attention = weights[sample];
            const scalar_t* rows[4];
            opmath_t coef[4];
            for (int k = 0; k < 4; ++k) {
              const bool inside = corners.offset[k] >= 0;
              rows[k] = inside ? value_l + corners.offset[k] * position_stride : zero_row.data();
              coef[k] = inside ? attention * corners.weight[k] : opmath_t(0);
            }
            accumulate_rows(acc.data(), rows, coef, channels);
          }
        }
        scalar_t* out = output + bqh * channels;
        for (int64_t c = 0; c < channels; ++c) {
          out[c] = static_cast<scalar_t>(acc[c]);
        }
      }
    }
  });
}

// grad_value is in the op-math type (float for half/bfloat16) and zero on entry.
template <typename scalar_t>
void backward_kernel(const scalar_t* grad_output, const scalar_t* value, const int64_t* shapes,
                     const int64_t* starts, const scalar_t* locations, const scalar_t* weights,
                     at::opmath_type<scalar_t>* grad_value, scalar_t* grad_locations,
                     scalar_t* grad_weights, const MSDeformAttnSizes& s) {
  using opmath_t = at::opmath_type<scalar_t>;
  const int64_t channels = s.channels;
  const int64_t position_stride = s.num_heads * channels;
  const int64_t samples_per_head = s.num_levels * s.num_points;
  at::parallel_for(0, s.batch * s.num_heads, 1, [&](int64_t begin, int64_t end) {
    std::vector<opmath_t> grad(channels);
    const std::vector<scalar_t> zero_row(channels, scalar_t(0));
    // Scatter target of corners outside the level: written, never read.
    std::vector<opmath_t> discard(4 * channels);
    for (int64_t bh = begin; bh < end; ++bh) {
      const int64_t batch = bh / s.num_heads;
      const int64_t head = bh % s.num_heads;
      const int64_t head_offset = batch * s.len_in * position_stride + head * channels;
      for (int64_t query = 0; query < s.len_q; ++query) {
        const int64_t bqh = (batch * s.len_q + query) * s.num_heads + head;
        const scalar_t* grad_out = grad_output + bqh * channels;
        if (query + kPrefetchQueries < s.len_q) {
          // The rows of a later query lie nHeads rows apart: too far for the hardware prefetcher.
          const int64_t ahead = bqh + kPrefetchQueries * s.num_heads;
          prefetch_range(grad_output + ahead * channels, channels);
          prefetch_range(locations + ahead * samples_per_head * 2, samples_per_head * 2);
          prefetch_range(weights + ahead * samples_per_head, samples_per_head);
        }
        for (int64_t c = 0; c < channels; ++c) {
          grad[c] = static_cast<opmath_t>(grad_out[c]);
        }
        for (int64_t level = 0; level < s.num_levels; ++level) {
          const int64_t height = shapes[2 * level];
          const int64_t width = shapes[2 * level + 1];
          const int64_t level_offset = head_offset + starts[level] * position_stride;
          for (int64_t point = 0; point < s.num_points; ++point) {
            const int64_t sample = bqh * samples_per_head + level * s.num_points + point;
            BilinearCorners<opmath_t> corners;
            if (!bilinear_corners<opmath_t>(locations[2 * sample], locations[2 * sample + 1],
                                            height, width, corners)) {
              grad_weights[sample] = scalar_t(0);
              grad_locations[2 * sample] = scalar_t(0);
              grad_locations[2 * sample + 1] = scalar_t(0);
              continue;
            }
            const opmath_t attention = weights[sample];
            const scalar_t* rows[4];
            opmath_t* grad_rows[4];
            opmath_t coef[4];
            for (int k = 0; k < 4; ++k) {
              const bool inside = corners.offset[k] >= 0;
              const int64_t offset = level_offset + corners.offset[k] * position_stride;
              rows[k] = inside ? value + offset : zero_row.data();
              grad_rows[k] = inside ? grad_value + offset : discard.data() + k * channels;
              coef[k] = attention * corners.weight[k];
            }
            // dots[k]: the output gradient against corner k's value (zero outside the level).
            opmath_t dots[4];
            backward_rows(grad.data(), rows, grad_rows, coef, dots, channels);
            grad_weights[sample] = static_cast<scalar_t>(
                corners.weight[0] * dots[0] + corners.weight[1] * dots[1] +
                corners.weight[2] * dots[2] + corners.weight[3] * dots[3]);
            const opmath_t grad_x = corners.high_y * (dots[1] - dots[0]) +
                                    corners.low_y * (dots[3] - dots[2]);
            const opmath_t grad_y = corners.high_x * (dots[2] - dots[0]) +
                                    corners.low_x * (dots[3] - dots[1]);
            grad_locations[2 * sample] = static_cast<scalar_t>(attention * width * grad_x);
            grad_locations[2 * sample + 1] = static_cast<scalar_t>(attention * height * grad_y);
          }
        }
      }
    }
  });
}

}  // namespace

void forward(const at::Tensor& value, const at::Tensor& spatial_shapes,
             const at::Tensor& level_start_index, const at::Tensor& sampling_locations,
             const at::Tensor& attention_weights, at::Tensor& output,
             const MSDeformAttnSizes& sizes) {
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, value.scalar_type(), "ms_deform_attn_forward_cpu", [&] {
        forward_kernel<scalar_t>(value.const_data_ptr<scalar_t>(),
                                 spatial_shapes.const_data_ptr<int64_t>(),
                                 level_start_index.const_data_ptr<int64_t>(),
                                 sampling_locations.const_data_ptr<scalar_t>(),
                                 attention_weights.const_data_ptr<scalar_t>(),
                                 output.mutable_data_ptr<scalar_t>(), sizes);
      });
}

void backward(const at::Tensor& grad_output, const at::Tensor& value,
              const at::Tensor& spatial_shapes, const at::Tensor& level_start_index,
              const at::Tensor& sampling_locations, const at::Tensor& attention_weights,
              at::Tensor& grad_value, at::Tensor& grad_locations, at::Tensor& grad_weights,
              const MSDeformAttnSizes& sizes) {
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, value.scalar_type(), "ms_deform_attn_backward_cpu", [&] {
        backward_kernel<scalar_t>(
            grad_output.const_data_ptr<scalar_t>(), value.const_data_ptr<scalar_t>(),
            spatial_shapes.const_data_ptr<int64_t>(), level_start_index.const_data_ptr<int64_t>(),
            sampling_locations.const_data_ptr<scalar_t>(),
            attention_weights.const_data_ptr<scalar_t>(),
            grad_value.mutable_data_ptr<at::opmath_type<scalar_t>>(),
            grad_locations.mutable_data_ptr<scalar_t>(), grad_weights.mutable_data_ptr<scalar_t>(),
            sizes);
      });
}

}  // namespace MS_DEFORM_ATTN_CPU_ISA
}  // namespace mask2former
