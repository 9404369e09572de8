// CPU entry points of the native op: input checks, output allocation, and the choice between the
// baseline kernels (compiled below) and the AVX2+FMA ones (ms_deform_attn_cpu_avx2.cpp).
#define MS_DEFORM_ATTN_CPU_ISA cpu_baseline
#include "ms_deform_attn_cpu_kernels.h"
#undef MS_DEFORM_ATTN_CPU_ISA

#include <cstdlib>
#include <cstring>

namespace mask2former {
namespace {

// Whether to run the AVX2+FMA kernels: compiled in, supported by this CPU, and not turned off
// with ATEN_CPU_CAPABILITY=default (PyTorch's own switch for its CPU kernels).
bool use_avx2() {
#if MS_DEFORM_ATTN_HAS_AVX2
  static const bool enabled = [] {
    const char* capability = std::getenv("ATEN_CPU_CAPABILITY");
    if (capability != nullptr && std::strcmp(capability, "default") == 0) {
      return false;
    }
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }();
  return enabled;
#else
  return false;
#endif
}

}  // namespace

at::Tensor ms_deform_attn_forward_cpu(
    const at::Tensor& value, const at::Tensor& spatial_shapes,
    const at::Tensor& level_start_index, const at::Tensor& sampling_locations,
    const at::Tensor& attention_weights) {
  const MSDeformAttnSizes sizes = check_ms_deform_attn_inputs(
      value, spatial_shapes, level_start_index, sampling_locations, attention_weights);
  at::Tensor output =
      at::empty({sizes.batch, sizes.len_q, sizes.num_heads * sizes.channels}, value.options());
  auto forward = use_avx2() ? &cpu_avx2::forward : &cpu_baseline::forward;
  forward(value.contiguous(), spatial_shapes.contiguous(), level_start_index.contiguous(),
          sampling_locations.contiguous(), attention_weights.contiguous(), output, sizes);
  return output;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> ms_deform_attn_backward_cpu(
    const at::Tensor& grad_output, const at::Tensor& value, const at::Tensor& spatial_shapes,
    const at::Tensor& level_start_index, const at::Tensor& sampling_locations,
    const at::Tensor& attention_weights) {
  const MSDeformAttnSizes sizes = check_ms_deform_attn_inputs(
      value, spatial_shapes, level_start_index, sampling_locations, attention_weights);
  check_ms_deform_attn_grad_output(grad_output, value, sizes);
  // Value gradients accumulate in the op-math type (float for half and bfloat16).
  at::Tensor grad_value = at::zeros(
      value.sizes(), value.options().dtype(at::toOpMathType(value.scalar_type())));
  at::Tensor grad_locations = at::empty(sampling_locations.sizes(), value.options());
  at::Tensor grad_weights = at::empty(attention_weights.sizes(), value.options());
  auto backward = use_avx2() ? &cpu_avx2::backward : &cpu_baseline::backward;
  backward(grad_output.contiguous(), value.contiguous(), spatial_shapes.contiguous(),
           level_start_index.contiguous(), sampling_locations.contiguous(),
           attention_weights.contiguous(), grad_value, grad_locations, grad_weights, sizes);
  return {grad_value.to(value.scalar_type()), grad_locations, grad_weights};
}

}  // namespace mask2former
