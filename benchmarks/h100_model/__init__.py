"""A GPU-free performance MODEL of the CUDA and Triton kernels on an H100 SXM (not a measurement).

Every kernel the launchers can launch is compiled for sm_80 and sm_90 on the CPU machine (nvcc -cubin; Triton's
own compile path with a GPUTarget), disassembled, and its steady-state aligned hot path is counted instruction by
instruction and split by execution pipe. With the bytes each element moves, that gives the busiest pipe's
utilisation at H100 copy bandwidth and a modeled fraction of that bandwidth. Method and limits:
benchmarks/README.md. Run: python -m benchmarks.h100_model [--only cuda|triton] [--filter TEXT] [--arch 90].
"""
