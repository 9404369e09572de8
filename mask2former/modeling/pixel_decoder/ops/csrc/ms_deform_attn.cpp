// The native MSDeformAttn op: its schema in the `mask2former` torch.library namespace, the input
// checks shared by the CPU and CUDA kernels, and the Python module that loads them.
#include "ms_deform_attn.h"

#include <ATen/ATen.h>
#include <torch/extension.h>
#include <torch/library.h>

namespace mask2former {

MSDeformAttnSizes check_ms_deform_attn_inputs(
    const at::Tensor& value, const at::Tensor& spatial_shapes,
    const at::Tensor& level_start_index, const at::Tensor& sampling_locations,
    const at::Tensor& attention_weights) {
  TORCH_CHECK(value.dim() == 4, "ms_deform_attn: value must be (B, Len_in, nHeads, C), got shape ",
              value.sizes());
  TORCH_CHECK(sampling_locations.dim() == 6 && sampling_locations.size(5) == 2,
              "ms_deform_attn: sampling_locations must be (B, Len_q, nHeads, L, P, 2), got shape ",
              sampling_locations.sizes());
  TORCH_CHECK(attention_weights.dim() == 5,
              "ms_deform_attn: attention_weights must be (B, Len_q, nHeads, L, P), got shape ",
              attention_weights.sizes());
  TORCH_CHECK(spatial_shapes.dim() == 2 && spatial_shapes.size(1) == 2,
              "ms_deform_attn: spatial_shapes must be (L, 2), got shape ", spatial_shapes.sizes());
  TORCH_CHECK(spatial_shapes.scalar_type() == at::kLong &&
                  level_start_index.scalar_type() == at::kLong,
              "ms_deform_attn: spatial_shapes and level_start_index must be int64, got ",
              spatial_shapes.scalar_type(), " and ", level_start_index.scalar_type());
  TORCH_CHECK(at::isFloatingType(value.scalar_type()),
              "ms_deform_attn: value must be a floating point tensor, got ", value.scalar_type());
  TORCH_CHECK(sampling_locations.scalar_type() == value.scalar_type() &&
                  attention_weights.scalar_type() == value.scalar_type(),
              "ms_deform_attn: value, sampling_locations and attention_weights must share one "
              "dtype, got ", value.scalar_type(), ", ", sampling_locations.scalar_type(), " and ",
              attention_weights.scalar_type());
  TORCH_CHECK(sampling_locations.device() == value.device() &&
                  attention_weights.device() == value.device(),
              "ms_deform_attn: value, sampling_locations and attention_weights must be on one "
              "device, got ", value.device(), ", ", sampling_locations.device(), " and ",
              attention_weights.device());

  MSDeformAttnSizes sizes{value.size(0),
                          value.size(1),
                          value.size(2),
                          value.size(3),
                          sampling_locations.size(1),
                          sampling_locations.size(3),
                          sampling_locations.size(4)};
  TORCH_CHECK(sampling_locations.size(0) == sizes.batch &&
                  sampling_locations.size(2) == sizes.num_heads,
              "ms_deform_attn: sampling_locations ", sampling_locations.sizes(),
              " does not match value ", value.sizes(), " in batch or heads");
  TORCH_CHECK(attention_weights.sizes() == sampling_locations.sizes().slice(0, 5),
              "ms_deform_attn: attention_weights ", attention_weights.sizes(),
              " must equal sampling_locations ", sampling_locations.sizes(),
              " without its last axis");
  TORCH_CHECK(spatial_shapes.size(0) == sizes.num_levels &&
                  level_start_index.dim() == 1 && level_start_index.size(0) == sizes.num_levels,
              "ms_deform_attn: spatial_shapes ", spatial_shapes.sizes(), " and level_start_index ",
              level_start_index.sizes(), " must have one row per level of sampling_locations (",
              sizes.num_levels, ")");

  const at::Tensor shapes = spatial_shapes.to(at::kCPU).contiguous();
  const at::Tensor starts = level_start_index.to(at::kCPU).contiguous();
  const int64_t* shape_data = shapes.data_ptr<int64_t>();
  const int64_t* start_data = starts.data_ptr<int64_t>();
  int64_t offset = 0;
  for (int64_t level = 0; level < sizes.num_levels; ++level) {
    const int64_t height = shape_data[2 * level];
    const int64_t width = shape_data[2 * level + 1];
    TORCH_CHECK(height > 0 && width > 0, "ms_deform_attn: level ", level,
                " has spatial shape (", height, ", ", width, "); sizes must be positive");
    TORCH_CHECK(start_data[level] == offset, "ms_deform_attn: level_start_index[", level,
                "] is ", start_data[level], " but the levels before it hold ", offset,
                " values; pass the exclusive cumulative sum of H_l * W_l");
    offset += height * width;
  }
  TORCH_CHECK(offset == sizes.len_in, "ms_deform_attn: spatial_shapes hold ", offset,
              " values in all, but value has Len_in = ", sizes.len_in);
  return sizes;
}

void check_ms_deform_attn_grad_output(const at::Tensor& grad_output, const at::Tensor& value,
                                      const MSDeformAttnSizes& sizes) {
  TORCH_CHECK(grad_output.dim() == 3 && grad_output.size(0) == sizes.batch &&
                  grad_output.size(1) == sizes.len_q &&
                  grad_output.size(2) == sizes.num_heads * sizes.channels &&
                  grad_output.scalar_type() == value.scalar_type() &&
                  grad_output.device() == value.device(),
              "ms_deform_attn_backward: grad_output must be (B, Len_q, nHeads * C) = (",
              sizes.batch, ", ", sizes.len_q, ", ", sizes.num_heads * sizes.channels, ") of ",
              value.scalar_type(), " on ", value.device(), ", got ", grad_output.sizes(), " of ",
              grad_output.scalar_type(), " on ", grad_output.device());
}

}  // namespace mask2former

TORCH_LIBRARY(mask2former, m) {
  m.def(
      "ms_deform_attn_forward(Tensor value, Tensor spatial_shapes, Tensor level_start_index, "
      "Tensor sampling_locations, Tensor attention_weights) -> Tensor",
      {at::Tag::pt2_compliant_tag});
  m.def(
      "ms_deform_attn_backward(Tensor grad_output, Tensor value, Tensor spatial_shapes, "
      "Tensor level_start_index, Tensor sampling_locations, Tensor attention_weights) "
      "-> (Tensor, Tensor, Tensor)",
      {at::Tag::pt2_compliant_tag});
}

TORCH_LIBRARY_IMPL(mask2former, CPU, m) {
  m.impl("ms_deform_attn_forward", &mask2former::ms_deform_attn_forward_cpu);
  m.impl("ms_deform_attn_backward", &mask2former::ms_deform_attn_backward_cpu);
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "Native multi-scale deformable attention; the ops live in torch.ops.mask2former.";
  m.def("has_cuda", []() {
#ifdef WITH_CUDA
    return true;
#else
    return false;
#endif
  }, "Whether the CUDA kernels were compiled in.");
}
