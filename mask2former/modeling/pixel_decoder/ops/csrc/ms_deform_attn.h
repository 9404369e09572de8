// Multi-scale deformable attention (Deformable DETR, Zhu et al. 2021, eq. 3): shared declarations
// of the native op. Semantics equal ms_deform_attn_pytorch.py: bilinear sampling with zero
// padding and align_corners=False, sampling locations (x, y) normalized to [0, 1] per level.
//
// Tensors (named axes):
//   value               (B, Len_in, nHeads, C)
//   spatial_shapes      (L, 2) int64, (H_l, W_l) per level
//   level_start_index   (L,) int64, offset of each level in Len_in
//   sampling_locations  (B, Len_q, nHeads, L, P, 2)
//   attention_weights   (B, Len_q, nHeads, L, P)
//   output              (B, Len_q, nHeads * C)
#pragma once

#include <ATen/core/Tensor.h>

#include <tuple>

namespace mask2former {

// Sizes of one call, read from the checked inputs.
struct MSDeformAttnSizes {
  int64_t batch;
  int64_t len_in;
  int64_t num_heads;
  int64_t channels;
  int64_t len_q;
  int64_t num_levels;
  int64_t num_points;
};

// Checks ranks, sizes, dtypes, devices and the level layout (sum of H_l * W_l == Len_in,
// level_start_index == exclusive cumulative sum); raises a clear error on bad input.
MSDeformAttnSizes check_ms_deform_attn_inputs(
    const at::Tensor& value, const at::Tensor& spatial_shapes,
    const at::Tensor& level_start_index, const at::Tensor& sampling_locations,
    const at::Tensor& attention_weights);

// Checks that grad_output is (B, Len_q, nHeads * C) of value's dtype.
void check_ms_deform_attn_grad_output(const at::Tensor& grad_output, const at::Tensor& value,
                                      const MSDeformAttnSizes& sizes);

// The ops' CPU implementations (ms_deform_attn_cpu.cpp); any strides.
at::Tensor ms_deform_attn_forward_cpu(
    const at::Tensor& value, const at::Tensor& spatial_shapes,
    const at::Tensor& level_start_index, const at::Tensor& sampling_locations,
    const at::Tensor& attention_weights);

// Returns (grad_value, grad_sampling_locations, grad_attention_weights).
std::tuple<at::Tensor, at::Tensor, at::Tensor> ms_deform_attn_backward_cpu(
    const at::Tensor& grad_output, const at::Tensor& value, const at::Tensor& spatial_shapes,
    const at::Tensor& level_start_index, const at::Tensor& sampling_locations,
    const at::Tensor& attention_weights);

// The CPU kernels (ms_deform_attn_cpu_kernels.h), once per instruction set: cpu_baseline, and
// cpu_avx2 where MS_DEFORM_ATTN_HAS_AVX2. Inputs contiguous and checked; output, grad_value
// (in the op-math type, zero on entry), grad_locations and grad_weights allocated.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define MS_DEFORM_ATTN_HAS_AVX2 1
#else
#define MS_DEFORM_ATTN_HAS_AVX2 0
#endif

#define MS_DEFORM_ATTN_DECLARE_CPU_KERNELS(isa)                                                  \
  namespace isa {                                                                                \
  void forward(const at::Tensor& value, const at::Tensor& spatial_shapes,                       \
               const at::Tensor& level_start_index, const at::Tensor& sampling_locations,       \
               const at::Tensor& attention_weights, at::Tensor& output,                         \
               const MSDeformAttnSizes& sizes);                                                 \
  void backward(const at::Tensor& grad_output, const at::Tensor& value,                         \
                const at::Tensor& spatial_shapes, const at::Tensor& level_start_index,          \
                const at::Tensor& sampling_locations, const at::Tensor& attention_weights,      \
                at::Tensor& grad_value, at::Tensor& grad_locations, at::Tensor& grad_weights,   \
                const MSDeformAttnSizes& sizes);                                                \
  }
MS_DEFORM_ATTN_DECLARE_CPU_KERNELS(cpu_baseline)
MS_DEFORM_ATTN_DECLARE_CPU_KERNELS(cpu_avx2)
#undef MS_DEFORM_ATTN_DECLARE_CPU_KERNELS

}  // namespace mask2former
