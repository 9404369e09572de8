// The CPU kernels compiled for AVX2+FMA (x86-64 with GCC; elsewhere this file is empty and the
// baseline kernels run). ms_deform_attn_cpu.cpp picks them at run time when the CPU has AVX2.
#include "ms_deform_attn.h"
#include "ms_deform_attn_bilinear.h"

#if MS_DEFORM_ATTN_HAS_AVX2
// Every library header the kernels use, before the target pragma: inline library code keeps the
// baseline instruction set, only the kernels below get AVX2.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <vector>

#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define MS_DEFORM_ATTN_CPU_ISA cpu_avx2
#include "ms_deform_attn_cpu_kernels.h"
#undef MS_DEFORM_ATTN_CPU_ISA
#pragma GCC pop_options
#endif
