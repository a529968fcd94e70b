// FD_HOST_DEVICE marks the functions shared by the CPU kernels, the CUDA kernels and the host-side test drivers:
// __host__ __device__ and force-inlined under nvcc, force-inlined plain C++ elsewhere.
#pragma once

#if defined(__CUDACC__)
#define FD_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define FD_HOST_DEVICE inline __attribute__((always_inline))
#endif
