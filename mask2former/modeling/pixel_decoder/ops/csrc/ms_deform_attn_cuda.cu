// CUDA kernels of multi-scale deformable attention (tensors: see ms_deform_attn.h).
//
// Work layout, shared by the forward and backward kernels: an "item" is one (batch, query, head)
// triple; a group of G lanes of one warp runs it, looping over its levels and points (its
// samples). Each lane handles kVec consecutive channels at a time: 16-byte vector loads
// (4 float, 8 half / bfloat16, 2 double) when the channel count and the pointers allow, else one
// channel (the generic path, any channel count). G is the smallest power of two that covers the
// C / kVec channel vectors of a head, at most a warp (lanes loop over wider heads), so 32 / G
// items share a warp: at the pixel decoder's 32 channels, 8 lanes of float4 per item in float32,
// 4 lanes of 8 halves in float16 / bfloat16. Lanes compute the sample's bilinear corners
// themselves (no shared memory, no block barrier).
//
// Forward: each lane sums its channels over the samples in the op-math type (float for half and
// bfloat16) and stores them once. Backward: each lane adds its channels' value gradients with
// atomics into an op-math buffer (float4 vector atomics on sm_90 and later), and reduces its
// channels' share of the sample's weight and location gradients (linear in the output-gradient
// dot products of the four corners); the group sums the shares with butterfly shuffles and one
// lane writes them, once and without atomics.
//
// Indices: per-item offsets are int64; positions within value (Len_in) are int32 (checked) and
// widened when multiplied by the row stride, so no product overflows for any tensor size.
#include "ms_deform_attn.h"
#include "ms_deform_attn_bilinear.h"

#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/Atomic.cuh>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <type_traits>

namespace mask2former {
namespace {

constexpr int kThreadsPerBlock = 256;
constexpr int kWarpSize = 32;
constexpr unsigned kFullWarp = 0xffffffffu;
// Grid size cap, in blocks per multiprocessor: the grid covers the pixel decoder's calls up to
// batches of several 1024 x 1024 images in one round (the hardware balances the blocks); larger
// inputs turn the kernels' grid-stride loops.
constexpr int kMaxBlocksPerMultiprocessor = 256;
constexpr int kVectorBytes = 16;

// kVec values of scalar_t, loaded or stored as one aligned access.
template <typename scalar_t, int kVec>
struct alignas(sizeof(scalar_t) * kVec) Pack {
  scalar_t values[kVec];
};

template <int kVec, typename scalar_t, typename opmath_t>
__device__ __forceinline__ void load_vector(const scalar_t* source, opmath_t (&out)[kVec]) {
  const Pack<scalar_t, kVec> pack = *reinterpret_cast<const Pack<scalar_t, kVec>*>(source);
#pragma unroll
  for (int i = 0; i < kVec; ++i) {
    out[i] = static_cast<opmath_t>(pack.values[i]);
  }
}

template <int kVec, typename scalar_t, typename opmath_t>
__device__ __forceinline__ void store_vector(scalar_t* target, const opmath_t (&in)[kVec]) {
  Pack<scalar_t, kVec> pack;
#pragma unroll
  for (int i = 0; i < kVec; ++i) {
    pack.values[i] = static_cast<scalar_t>(in[i]);
  }
  *reinterpret_cast<Pack<scalar_t, kVec>*>(target) = pack;
}

// target[i] += values[i] for i < kVec, atomically per element; target is kVec-aligned.
template <int kVec, typename opmath_t>
__device__ __forceinline__ void atomic_add_vector(opmath_t* target,
                                                  const opmath_t (&values)[kVec]) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  constexpr bool kFloat4Atomics = std::is_same_v<opmath_t, float> && kVec % 4 == 0;
#else
  constexpr bool kFloat4Atomics = false;
#endif
  if constexpr (kFloat4Atomics) {
#pragma unroll
    for (int i = 0; i < kVec; i += 4) {
      atomicAdd(reinterpret_cast<float4*>(target + i),
                make_float4(values[i], values[i + 1], values[i + 2], values[i + 3]));
    }
  } else {
#pragma unroll
    for (int i = 0; i < kVec; ++i) {
      gpuAtomicAdd(target + i, values[i]);
    }
  }
}

// a / b for 0 <= a, 0 < b, in 32 bits when both fit (int64 division is a long software routine).
__device__ __forceinline__ int64_t divide(int64_t a, int64_t b) {
  constexpr int64_t kMax32 = std::numeric_limits<uint32_t>::max();
  if (a <= kMax32 && b <= kMax32) {
    return static_cast<uint32_t>(a) / static_cast<uint32_t>(b);
  }
  return a / b;
}

// Where one lane of a kernel stands in the work layout (see the top of the file).
struct LaneLayout {
  int group;        // lanes per item, a power of two <= 32
  int group_lane;   // this lane's index within its group
  int item_in_warp; // this lane's group within its warp
  int items_per_warp;
  int64_t first_item;  // the first item of this lane's warp, in its first grid-stride round
  int64_t item_stride; // items per grid-stride round

  __device__ explicit LaneLayout(int group_log2) {
    const int lane = threadIdx.x % kWarpSize;
    group = 1 << group_log2;
    group_lane = lane & (group - 1);
    item_in_warp = lane >> group_log2;
    items_per_warp = kWarpSize >> group_log2;
    const int64_t warp = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / kWarpSize;
    const int64_t num_warps = static_cast<int64_t>(gridDim.x) * blockDim.x / kWarpSize;
    first_item = warp * items_per_warp;
    item_stride = num_warps * items_per_warp;
  }
};

// An item's value slice: value + batch_head_offset is value[batch, 0, head, 0].
struct Item {
  int64_t batch_head_offset;

  __device__ Item(int64_t item, const MSDeformAttnSizes& s) {
    const int64_t batch_query = divide(item, s.num_heads);
    const int64_t head = item - batch_query * s.num_heads;
    const int64_t batch = divide(batch_query, s.len_q);
    batch_head_offset = (batch * s.len_in * s.num_heads + head) * s.channels;
  }
};

// One level's shape and start, read once per level from the level table (see level_table).
struct Level {
  int height, width, start;

  __device__ Level(const int* table, int level)
      : height(table[3 * level]), width(table[3 * level + 1]), start(table[3 * level + 2]) {}
};

template <typename scalar_t, int kVec>
__global__ void __launch_bounds__(kThreadsPerBlock)
    forward_kernel(const scalar_t* __restrict__ value, const int* __restrict__ levels,
                   const scalar_t* __restrict__ locations,
                   const scalar_t* __restrict__ weights, scalar_t* __restrict__ output,
                   const MSDeformAttnSizes s, const int group_log2) {
  using opmath_t = at::opmath_type<scalar_t>;
  const LaneLayout lanes(group_log2);
  const int64_t num_items = s.batch * s.len_q * s.num_heads;
  const int64_t row_stride = s.num_heads * s.channels;  // value: next position, same head
  const int num_vectors = static_cast<int>(s.channels / kVec);
  const int samples_per_item = static_cast<int>(s.num_levels * s.num_points);
  for (int64_t first = lanes.first_item; first < num_items; first += lanes.item_stride) {
    const int64_t item = first + lanes.item_in_warp;
    if (item >= num_items) {
      continue;  // no warp-wide operation below: lanes may leave
    }
    const scalar_t* value_item = value + Item(item, s).batch_head_offset;
    const scalar_t* item_locations = locations + item * samples_per_item * 2;
    const scalar_t* item_weights = weights + item * samples_per_item;
    for (int vector = lanes.group_lane; vector < num_vectors; vector += lanes.group) {
      const int channel = vector * kVec;
      opmath_t acc[kVec];
#pragma unroll
      for (int i = 0; i < kVec; ++i) {
        acc[i] = 0;
      }
      for (int level_index = 0; level_index < s.num_levels; ++level_index) {
        const Level level(levels, level_index);
        for (int point = 0; point < s.num_points; ++point) {
          const int sample = level_index * static_cast<int>(s.num_points) + point;
          BilinearCorners<opmath_t, int> corners;
          if (!bilinear_corners<opmath_t, int>(
                  static_cast<opmath_t>(item_locations[2 * sample]),
                  static_cast<opmath_t>(item_locations[2 * sample + 1]), level.height,
                  level.width, corners)) {
            continue;
          }
          const opmath_t attention = static_cast<opmath_t>(item_weights[sample]);
#pragma unroll
          for (int k = 0; k < 4; ++k) {
            if (corners.offset[k] >= 0) {
              opmath_t corner[kVec];
              load_vector<kVec>(
                  value_item + static_cast<int64_t>(level.start + corners.offset[k]) * row_stride +
                      channel,
                  corner);
              const opmath_t coefficient = attention * corners.weight[k];
#pragma unroll
              for (int i = 0; i < kVec; ++i) {
                acc[i] += coefficient * corner[i];
              }
            }
          }
        }
      }
      store_vector<kVec>(output + item * s.channels + channel, acc);
    }
  }
}

// grad_value is in the op-math type and zero on entry. Every lane of a warp runs the same number
// of samples (out-of-range items with zero shares), so the shuffles see full warps.
template <typename scalar_t, int kVec>
__global__ void __launch_bounds__(kThreadsPerBlock)
    backward_kernel(const scalar_t* __restrict__ grad_output, const scalar_t* __restrict__ value,
                    const int* __restrict__ levels, const scalar_t* __restrict__ locations,
                    const scalar_t* __restrict__ weights,
                    at::opmath_type<scalar_t>* __restrict__ grad_value,
                    scalar_t* __restrict__ grad_locations, scalar_t* __restrict__ grad_weights,
                    const MSDeformAttnSizes s, const int group_log2) {
  using opmath_t = at::opmath_type<scalar_t>;
  const LaneLayout lanes(group_log2);
  const int64_t num_items = s.batch * s.len_q * s.num_heads;
  const int64_t row_stride = s.num_heads * s.channels;
  const int num_vectors = static_cast<int>(s.channels / kVec);
  const int samples_per_item = static_cast<int>(s.num_levels * s.num_points);
  for (int64_t first = lanes.first_item; first < num_items; first += lanes.item_stride) {
    const int64_t item = first + lanes.item_in_warp;
    const bool active = item < num_items;
    const int64_t item_offset = active ? Item(item, s).batch_head_offset : 0;
    const scalar_t* value_item = value + item_offset;
    opmath_t* grad_value_item = grad_value + item_offset;
    const scalar_t* grad_out = grad_output + (active ? item * s.channels : 0);
    const int64_t first_sample = item * samples_per_item;
    for (int level_index = 0; level_index < s.num_levels; ++level_index) {
      const Level level(levels, level_index);
      for (int point = 0; point < s.num_points; ++point) {
        const int sample = level_index * static_cast<int>(s.num_points) + point;
        BilinearCorners<opmath_t, int> corners;
        const bool inside =
            active && bilinear_corners<opmath_t, int>(
                          static_cast<opmath_t>(locations[2 * (first_sample + sample)]),
                          static_cast<opmath_t>(locations[2 * (first_sample + sample) + 1]),
                          level.height, level.width, corners);
        // This lane's share of the weight gradient and of the location gradient's x and y
        // factors (before attention * size).
        opmath_t share[3] = {0, 0, 0};
        opmath_t attention = 0;
        if (inside) {
          attention = static_cast<opmath_t>(weights[first_sample + sample]);
          // dots[k]: the output gradient against corner k's value (zero outside the level).
          opmath_t dots[4] = {0, 0, 0, 0};
          for (int vector = lanes.group_lane; vector < num_vectors; vector += lanes.group) {
            const int channel = vector * kVec;
            opmath_t grad[kVec];  // re-read for each sample: a hit in L1
            load_vector<kVec>(grad_out + channel, grad);
#pragma unroll
            for (int k = 0; k < 4; ++k) {
              if (corners.offset[k] >= 0) {
                const int64_t offset =
                    static_cast<int64_t>(level.start + corners.offset[k]) * row_stride + channel;
                opmath_t corner[kVec];
                load_vector<kVec>(value_item + offset, corner);
                const opmath_t coefficient = attention * corners.weight[k];
                opmath_t grad_corner[kVec];
#pragma unroll
                for (int i = 0; i < kVec; ++i) {
                  dots[k] += grad[i] * corner[i];
                  grad_corner[i] = coefficient * grad[i];
                }
                atomic_add_vector<kVec>(grad_value_item + offset, grad_corner);
              }
            }
          }
          share[0] = corners.weight[0] * dots[0] + corners.weight[1] * dots[1] +
                     corners.weight[2] * dots[2] + corners.weight[3] * dots[3];
          share[1] = corners.high_y * (dots[1] - dots[0]) + corners.low_y * (dots[3] - dots[2]);
          share[2] = corners.high_x * (dots[2] - dots[0]) + corners.low_x * (dots[3] - dots[1]);
        }
        for (int offset = lanes.group >> 1; offset > 0; offset >>= 1) {
#pragma unroll
          for (int i = 0; i < 3; ++i) {
            share[i] += __shfl_xor_sync(kFullWarp, share[i], offset);
          }
        }
        // The group's lanes take turns writing, so the stores spread over the lanes.
        if (active && lanes.group_lane == (sample & (lanes.group - 1))) {
          const int64_t index = first_sample + sample;
          grad_weights[index] = static_cast<scalar_t>(share[0]);
          grad_locations[2 * index] = static_cast<scalar_t>(attention * level.width * share[1]);
          grad_locations[2 * index + 1] =
              static_cast<scalar_t>(attention * level.height * share[2]);
        }
      }
    }
  }
}

// How the kernels run on one call: the channel vector width and the lanes per item.
struct Launch {
  int vector;      // channels per lane access: 16 bytes' worth, or 1
  int group_log2;  // log2 of the lanes per item
  int blocks;
};

bool aligned(const void* pointer, int64_t bytes) {
  return reinterpret_cast<uintptr_t>(pointer) % bytes == 0;
}

// The launch for `tensors` (whose rows of C channels the kernels access as vectors).
template <typename scalar_t>
Launch plan_launch(const MSDeformAttnSizes& s, std::initializer_list<const void*> tensors) {
  constexpr int kFullVector = kVectorBytes / sizeof(scalar_t);
  bool vectorize = s.channels % kFullVector == 0;
  for (const void* pointer : tensors) {
    vectorize = vectorize && aligned(pointer, kVectorBytes);
  }
  Launch launch{vectorize ? kFullVector : 1, 0, 0};
  const int64_t num_vectors = s.channels / launch.vector;
  while ((int64_t{1} << launch.group_log2) < num_vectors && launch.group_log2 < 5) {
    ++launch.group_log2;
  }
  const int64_t items_per_warp = kWarpSize >> launch.group_log2;
  const int64_t num_items = s.batch * s.len_q * s.num_heads;
  const int64_t warps = (num_items + items_per_warp - 1) / items_per_warp;
  const int64_t warps_per_block = kThreadsPerBlock / kWarpSize;
  int multiprocessors = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&multiprocessors, cudaDevAttrMultiProcessorCount,
                                        c10::cuda::current_device()));
  const int64_t max_blocks = static_cast<int64_t>(kMaxBlocksPerMultiprocessor) * multiprocessors;
  launch.blocks = static_cast<int>(
      std::max<int64_t>(1, std::min(max_blocks, (warps + warps_per_block - 1) / warps_per_block)));
  return launch;
}

// Runs launch_kernel(std::integral_constant<int, kVec>) with the launch's vector width as kVec.
template <typename scalar_t, typename LaunchKernel>
void with_vector_width(const Launch& launch, const LaunchKernel& launch_kernel) {
  constexpr int kFullVector = kVectorBytes / sizeof(scalar_t);
  if (launch.vector == kFullVector) {
    launch_kernel(std::integral_constant<int, kFullVector>());
  } else {
    launch_kernel(std::integral_constant<int, 1>());
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// The kernels index positions of value (and sizes within a level) in int32.
void check_cuda_index_range(const MSDeformAttnSizes& sizes) {
  TORCH_CHECK(sizes.len_in <= std::numeric_limits<int>::max() &&
                  sizes.num_levels * sizes.num_points <= std::numeric_limits<int>::max() &&
                  sizes.channels <= std::numeric_limits<int>::max(),
              "ms_deform_attn (CUDA): Len_in = ", sizes.len_in, ", L * P = ",
              sizes.num_levels * sizes.num_points, " and C = ", sizes.channels,
              " must each be below 2^31");
}

// The (L, 3) int32 table (H_l, W_l, start_l) that the kernels read, on `device`, from the
// checked CPU copies of spatial_shapes and level_start_index. It is uploaded from pinned memory
// without waiting for the stream: CPU spatial_shapes and level_start_index cost no
// synchronization (CUDA ones a copy to the host, which the input check needs anyway).
at::Tensor level_table(const at::Tensor& shapes_cpu, const at::Tensor& starts_cpu,
                       const at::Device& device) {
  const at::Tensor shapes = shapes_cpu.contiguous();
  const at::Tensor starts = starts_cpu.contiguous();
  const int64_t num_levels = shapes.size(0);
  at::Tensor table =
      at::empty({num_levels, 3}, at::TensorOptions().dtype(at::kInt).pinned_memory(true));
  const int64_t* shape_data = shapes.const_data_ptr<int64_t>();
  const int64_t* start_data = starts.const_data_ptr<int64_t>();
  int* table_data = table.mutable_data_ptr<int>();
  for (int64_t level = 0; level < num_levels; ++level) {
    table_data[3 * level] = static_cast<int>(shape_data[2 * level]);
    table_data[3 * level + 1] = static_cast<int>(shape_data[2 * level + 1]);
    table_data[3 * level + 2] = static_cast<int>(start_data[level]);
  }
  return table.to(device, /*non_blocking=*/true);
}

at::Tensor ms_deform_attn_forward_cuda(
    const at::Tensor& value, const at::Tensor& spatial_shapes,
    const at::Tensor& level_start_index, const at::Tensor& sampling_locations,
    const at::Tensor& attention_weights) {
  const at::Tensor shapes_cpu = spatial_shapes.to(at::kCPU);
  const at::Tensor starts_cpu = level_start_index.to(at::kCPU);
  const MSDeformAttnSizes sizes = check_ms_deform_attn_inputs(
      value, shapes_cpu, starts_cpu, sampling_locations, attention_weights);
  check_cuda_index_range(sizes);
  const c10::cuda::CUDAGuard device_guard(value.device());
  at::Tensor output =
      at::empty({sizes.batch, sizes.len_q, sizes.num_heads * sizes.channels}, value.options());
  if (output.numel() == 0) {
    return output;
  }
  const at::Tensor value_c = value.contiguous();
  const at::Tensor levels = level_table(shapes_cpu, starts_cpu, value.device());
  const at::Tensor locations_c = sampling_locations.contiguous();
  const at::Tensor weights_c = attention_weights.contiguous();
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, value.scalar_type(), "ms_deform_attn_forward_cuda", [&] {
        const Launch launch = plan_launch<scalar_t>(
            sizes, {value_c.const_data_ptr(), output.const_data_ptr()});
        with_vector_width<scalar_t>(launch, [&](auto vector) {
          forward_kernel<scalar_t, decltype(vector)::value>
              <<<launch.blocks, kThreadsPerBlock, 0, stream>>>(
                  value_c.const_data_ptr<scalar_t>(), levels.const_data_ptr<int>(),
                  locations_c.const_data_ptr<scalar_t>(),
                  weights_c.const_data_ptr<scalar_t>(), output.mutable_data_ptr<scalar_t>(),
                  sizes, launch.group_log2);
        });
      });
  return output;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> ms_deform_attn_backward_cuda(
    const at::Tensor& grad_output, const at::Tensor& value, const at::Tensor& spatial_shapes,
    const at::Tensor& level_start_index, const at::Tensor& sampling_locations,
    const at::Tensor& attention_weights) {
  const at::Tensor shapes_cpu = spatial_shapes.to(at::kCPU);
  const at::Tensor starts_cpu = level_start_index.to(at::kCPU);
  const MSDeformAttnSizes sizes = check_ms_deform_attn_inputs(
      value, shapes_cpu, starts_cpu, sampling_locations, attention_weights);
  check_ms_deform_attn_grad_output(grad_output, value, sizes);
  check_cuda_index_range(sizes);
  // Value gradients are summed with atomics, in no fixed order.
  at::globalContext().alertNotDeterministic("ms_deform_attn_backward_cuda");
  const c10::cuda::CUDAGuard device_guard(value.device());
  const at::Tensor grad_output_c = grad_output.contiguous();
  const at::Tensor value_c = value.contiguous();
  const at::Tensor levels = level_table(shapes_cpu, starts_cpu, value.device());
  const at::Tensor locations_c = sampling_locations.contiguous();
  const at::Tensor weights_c = attention_weights.contiguous();
  // Value gradients accumulate in the op-math type (float for half and bfloat16).
  at::Tensor grad_value = at::zeros(
      value.sizes(), value.options().dtype(at::toOpMathType(value.scalar_type())));
  at::Tensor grad_locations = at::empty(sampling_locations.sizes(), value.options());
  at::Tensor grad_weights = at::empty(attention_weights.sizes(), value.options());
  if (attention_weights.numel() > 0) {
    const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND2(
        at::kHalf, at::kBFloat16, value.scalar_type(), "ms_deform_attn_backward_cuda", [&] {
          const Launch launch = plan_launch<scalar_t>(
              sizes, {value_c.const_data_ptr(), grad_output_c.const_data_ptr(),
                      grad_value.const_data_ptr()});
          with_vector_width<scalar_t>(launch, [&](auto vector) {
            backward_kernel<scalar_t, decltype(vector)::value>
                <<<launch.blocks, kThreadsPerBlock, 0, stream>>>(
                    grad_output_c.const_data_ptr<scalar_t>(), value_c.const_data_ptr<scalar_t>(),
                    levels.const_data_ptr<int>(), locations_c.const_data_ptr<scalar_t>(),
                    weights_c.const_data_ptr<scalar_t>(),
                    grad_value.mutable_data_ptr<at::opmath_type<scalar_t>>(),
                    grad_locations.mutable_data_ptr<scalar_t>(),
                    grad_weights.mutable_data_ptr<scalar_t>(), sizes, launch.group_log2);
          });
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
