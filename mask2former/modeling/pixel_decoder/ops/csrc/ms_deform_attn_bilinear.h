// Bilinear sampling of one location, shared by the CPU and CUDA kernels: align_corners=False
// (pixel centers at (i + 0.5) / size) and zero padding, as torch.nn.functional.grid_sample.
#pragma once

#include <c10/macros/Macros.h>

#include <cmath>
#include <cstdint>

namespace mask2former {
// Internal linkage: each file (and instruction set) compiles its own copy.
namespace {

template <typename T>
C10_HOST_DEVICE inline T floor_value(T x) {
#ifdef __CUDA_ARCH__
  return floor(x);
#else
  return std::floor(x);
#endif
}

// The four bilinear corners of one sampling location within its level: (y0, x0), (y0, x1),
// (y1, x0), (y1, x1). An offset is the corner's position y * W + x within the level, or -1 when
// the corner lies outside (zero padding). index_t: int64_t, or int32_t where H * W fits.
template <typename opmath_t, typename index_t = int64_t>
struct BilinearCorners {
  index_t offset[4];
  opmath_t weight[4];
  opmath_t low_x, low_y, high_x, high_y;  // fractional parts and their complements
};

// Fills `corners` for the location (loc_x, loc_y) in [0, 1] (align_corners=False); returns false
// when no corner lies inside the level, i.e. the sample is zero. NaN locations sample zero.
template <typename opmath_t, typename index_t = int64_t>
C10_HOST_DEVICE inline bool bilinear_corners(opmath_t loc_x, opmath_t loc_y, index_t height,
                                             index_t width,
                                             BilinearCorners<opmath_t, index_t>& corners) {
  const opmath_t x = loc_x * static_cast<opmath_t>(width) - opmath_t(0.5);
  const opmath_t y = loc_y * static_cast<opmath_t>(height) - opmath_t(0.5);
  if (!(x >= -1 && y >= -1 && x < width && y < height)) {
    return false;
  }
  const opmath_t x0_float = floor_value(x);
  const opmath_t y0_float = floor_value(y);
  const index_t x0 = static_cast<index_t>(x0_float);
  const index_t y0 = static_cast<index_t>(y0_float);
  corners.low_x = x - x0_float;
  corners.low_y = y - y0_float;
  corners.high_x = 1 - corners.low_x;
  corners.high_y = 1 - corners.low_y;
  const bool x0_in = x0 >= 0;
  const bool x1_in = x0 + 1 < width;
  const bool y0_in = y0 >= 0;
  const bool y1_in = y0 + 1 < height;
  corners.offset[0] = (y0_in && x0_in) ? y0 * width + x0 : -1;
  corners.offset[1] = (y0_in && x1_in) ? y0 * width + x0 + 1 : -1;
  corners.offset[2] = (y1_in && x0_in) ? (y0 + 1) * width + x0 : -1;
  corners.offset[3] = (y1_in && x1_in) ? (y0 + 1) * width + x0 + 1 : -1;
  corners.weight[0] = corners.high_y * corners.high_x;
  corners.weight[1] = corners.high_y * corners.low_x;
  corners.weight[2] = corners.low_y * corners.high_x;
  corners.weight[3] = corners.low_y * corners.low_x;
  return true;
}

}  // namespace
}  // namespace mask2former
