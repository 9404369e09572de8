// CUDA kernels of multi-scale deformable attention (tensors: see ms_deform_attn.h).
//
// Forward: one thread per output element (b, q, h, c), summing over levels and points; threads of
// a warp read consecutive channels of a value row. Backward: one warp per sample (b, q, h, l, p),
// its lanes over the channels; value gradients are scattered with atomicAdd, the dot products for
// the location and weight gradients are reduced across the warp. Half and bfloat16 accumulate in
// float (value gradients in a float buffer).
#include "ms_deform_attn.h"
#include "ms_deform_attn_bilinear.h"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/Atomic.cuh>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>

namespace mask2former {
namespace {

constexpr int kThreadsPerBlock = 256;
constexpr int kWarpSize = 32;
constexpr int64_t kMaxBlocks = 1 << 20;  // grid-stride loops cover the rest

int64_t num_blocks(int64_t num_threads) {
  return std::max<int64_t>(
      1, std::min<int64_t>(kMaxBlocks, (num_threads + kThreadsPerBlock - 1) / kThreadsPerBlock));
}

template <typename scalar_t>
__global__ void forward_kernel(const scalar_t* __restrict__ value,
                               const int64_t* __restrict__ shapes,
                               const int64_t* __restrict__ starts,
                               const scalar_t* __restrict__ locations,
                               const scalar_t* __restrict__ weights, scalar_t* __restrict__ output,
                               const MSDeformAttnSizes s) {
  using opmath_t = at::opmath_type<scalar_t>;
  const int64_t total = s.batch * s.len_q * s.num_heads * s.channels;
  const int64_t position_stride = s.num_heads * s.channels;
  for (int64_t index = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; index < total;
       index += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const int64_t channel = index % s.channels;
    const int64_t bqh = index / s.channels;
    const int64_t head = bqh % s.num_heads;
    const int64_t batch = bqh / (s.num_heads * s.len_q);
    const scalar_t* value_bhc =
        value + batch * s.len_in * position_stride + head * s.channels + channel;
    opmath_t acc = 0;
    for (int64_t level = 0; level < s.num_levels; ++level) {
      const int64_t height = shapes[2 * level];
      const int64_t width = shapes[2 * level + 1];
      const scalar_t* value_l = value_bhc + starts[level] * position_stride;
      for (int64_t point = 0; point < s.num_points; ++point) {
        const int64_t sample = (bqh * s.num_levels + level) * s.num_points + point;
        BilinearCorners<opmath_t> corners;
        if (!bilinear_corners<opmath_t>(static_cast<opmath_t>(locations[2 * sample]),
                                        static_cast<opmath_t>(locations[2 * sample + 1]), height,
                                        width, corners)) {
          continue;
        }
        opmath_t sampled = 0;
#pragma unroll
        for (int k = 0; k < 4; ++k) {
          if (corners.offset[k] >= 0) {
            sampled += corners.weight[k] *
                       static_cast<opmath_t>(value_l[corners.offset[k] * position_stride]);
          }
        }
        acc += static_cast<opmath_t>(weights[sample]) * sampled;
      }
    }
    output[index] = static_cast<scalar_t>(acc);
  }
}

template <typename opmath_t>
__device__ __forceinline__ opmath_t warp_sum(opmath_t x) {
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) {
    x += __shfl_down_sync(0xffffffffu, x, offset);
  }
  return x;
}

// grad_value is in the op-math type and zero on entry. blockDim.x is a multiple of the warp
// size, so every lane of a warp runs the same samples and the shuffles see full warps.
template <typename scalar_t>
__global__ void backward_kernel(const scalar_t* __restrict__ grad_output,
                                const scalar_t* __restrict__ value,
                                const int64_t* __restrict__ shapes,
                                const int64_t* __restrict__ starts,
                                const scalar_t* __restrict__ locations,
                                const scalar_t* __restrict__ weights,
                                at::opmath_type<scalar_t>* __restrict__ grad_value,
                                scalar_t* __restrict__ grad_locations,
                                scalar_t* __restrict__ grad_weights, const MSDeformAttnSizes s) {
  using opmath_t = at::opmath_type<scalar_t>;
  const int64_t num_samples = s.batch * s.len_q * s.num_heads * s.num_levels * s.num_points;
  const int64_t position_stride = s.num_heads * s.channels;
  const int lane = threadIdx.x % kWarpSize;
  const int64_t num_warps = static_cast<int64_t>(blockDim.x) * gridDim.x / kWarpSize;
  for (int64_t sample = (blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x) / kWarpSize;
       sample < num_samples; sample += num_warps) {
    const int64_t level = (sample / s.num_points) % s.num_levels;
    const int64_t bqh = sample / (s.num_points * s.num_levels);
    const int64_t head = bqh % s.num_heads;
    const int64_t batch = bqh / (s.num_heads * s.len_q);
    const int64_t height = shapes[2 * level];
    const int64_t width = shapes[2 * level + 1];
    BilinearCorners<opmath_t> corners;
    if (!bilinear_corners<opmath_t>(static_cast<opmath_t>(locations[2 * sample]),
                                    static_cast<opmath_t>(locations[2 * sample + 1]), height,
                                    width, corners)) {
      if (lane == 0) {
        grad_weights[sample] = scalar_t(0);
        grad_locations[2 * sample] = scalar_t(0);
        grad_locations[2 * sample + 1] = scalar_t(0);
      }
      continue;
    }
    const opmath_t attention = static_cast<opmath_t>(weights[sample]);
    const int64_t level_offset =
        batch * s.len_in * position_stride + starts[level] * position_stride + head * s.channels;
    const scalar_t* grad_out = grad_output + bqh * s.channels;
    // dots[k]: the output gradient against corner k's value (zero outside the level).
    opmath_t dots[4] = {0, 0, 0, 0};
    for (int64_t channel = lane; channel < s.channels; channel += kWarpSize) {
      const opmath_t grad = static_cast<opmath_t>(grad_out[channel]);
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        if (corners.offset[k] >= 0) {
          const int64_t offset = level_offset + corners.offset[k] * position_stride + channel;
          dots[k] += grad * static_cast<opmath_t>(value[offset]);
          gpuAtomicAdd(grad_value + offset, attention * corners.weight[k] * grad);
        }
      }
    }
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      dots[k] = warp_sum(dots[k]);
    }
    if (lane == 0) {
      grad_weights[sample] = static_cast<scalar_t>(
          corners.weight[0] * dots[0] + corners.weight[1] * dots[1] +
          corners.weight[2] * dots[2] + corners.weight[3] * dots[3]);
      const opmath_t grad_x =
          corners.high_y * (dots[1] - dots[0]) + corners.low_y * (dots[3] - dots[2]);
      const opmath_t grad_y =
          corners.high_x * (dots[2] - dots[0]) + corners.low_x * (dots[3] - dots[1]);
      grad_locations[2 * sample] = static_cast<scalar_t>(attention * width * grad_x);
      grad_locations[2 * sample + 1] = static_cast<scalar_t>(attention * height * grad_y);
    }
  }
}

at::Tensor ms_deform_attn_forward_cuda(
    const at::Tensor& value, const at::Tensor& spatial_shapes,
    const at::Tensor& level_start_index, const at::Tensor& sampling_locations,
    const at::Tensor& attention_weights) {
  const MSDeformAttnSizes sizes = check_ms_deform_attn_inputs(
      value, spatial_shapes, level_start_index, sampling_locations, attention_weights);
  const c10::cuda::CUDAGuard device_guard(value.device());
  const at::Tensor value_c = value.contiguous();
  const at::Tensor shapes_c = spatial_shapes.to(value.device()).contiguous();
  const at::Tensor starts_c = level_start_index.to(value.device()).contiguous();
  const at::Tensor locations_c = sampling_locations.contiguous();
  const at::Tensor weights_c = attention_weights.contiguous();
  at::Tensor output =
      at::empty({sizes.batch, sizes.len_q, sizes.num_heads * sizes.channels}, value.options());
  if (output.numel() == 0) {
    return output;
  }
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, value.scalar_type(), "ms_deform_attn_forward_cuda", [&] {
        forward_kernel<scalar_t><<<num_blocks(output.numel()), kThreadsPerBlock, 0, stream>>>(
            value_c.const_data_ptr<scalar_t>(), shapes_c.const_data_ptr<int64_t>(),
            starts_c.const_data_ptr<int64_t>(), locations_c.const_data_ptr<scalar_t>(),
            weights_c.const_data_ptr<scalar_t>(), output.mutable_data_ptr<scalar_t>(), sizes);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
  return output;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> ms_deform_attn_backward_cuda(
    const at::Tensor& grad_output, const at::Tensor& value, const at::Tensor& spatial_shapes,
    const at::Tensor& level_start_index, const at::Tensor& sampling_locations,
    const at::Tensor& attention_weights) {
  const MSDeformAttnSizes sizes = check_ms_deform_attn_inputs(
      value, spatial_shapes, level_start_index, sampling_locations, attention_weights);
  check_ms_deform_attn_grad_output(grad_output, value, sizes);
  const c10::cuda::CUDAGuard device_guard(value.device());
  const at::Tensor grad_output_c = grad_output.contiguous();
  const at::Tensor value_c = value.contiguous();
  const at::Tensor shapes_c = spatial_shapes.to(value.device()).contiguous();
  const at::Tensor starts_c = level_start_index.to(value.device()).contiguous();
  const at::Tensor locations_c = sampling_locations.contiguous();
  const at::Tensor weights_c = attention_weights.contiguous();
  at::Tensor grad_value = at::zeros(
      value.sizes(), value.options().dtype(at::toOpMathType(value.scalar_type())));
  at::Tensor grad_locations = at::empty(sampling_locations.sizes(), value.options());
  at::Tensor grad_weights = at::empty(attention_weights.sizes(), value.options());
  const int64_t num_samples = attention_weights.numel();
  if (num_samples > 0) {
    const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND2(
        at::kHalf, at::kBFloat16, value.scalar_type(), "ms_deform_attn_backward_cuda", [&] {
          backward_kernel<scalar_t>
              <<<num_blocks(num_samples * kWarpSize), kThreadsPerBlock, 0, stream>>>(
                  grad_output_c.const_data_ptr<scalar_t>(), value_c.const_data_ptr<scalar_t>(),
                  shapes_c.const_data_ptr<int64_t>(), starts_c.const_data_ptr<int64_t>(),
                  locations_c.const_data_ptr<scalar_t>(), weights_c.const_data_ptr<scalar_t>(),
                  grad_value.mutable_data_ptr<at::opmath_type<scalar_t>>(),
                  grad_locations.mutable_data_ptr<scalar_t>(),
                  grad_weights.mutable_data_ptr<scalar_t>(), sizes);
          C10_CUDA_KERNEL_LAUNCH_CHECK();
        });
  }
  return {grad_value.to(value.scalar_type()), grad_locations, grad_weights};
}

}  // namespace
}  // namespace mask2former

TORCH_LIBRARY_IMPL(mask2former, CUDA, m) {
  m.impl("ms_deform_attn_forward", &mask2former::ms_deform_attn_forward_cuda);
  m.impl("ms_deform_attn_backward", &mask2former::ms_deform_attn_backward_cuda);
}
