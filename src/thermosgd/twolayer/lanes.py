"""The compiled kernels' block width, shared by the kernels and their caller without importing numba."""

#: Replicas per block: the kernels' innermost loops run over them (SIMD lanes). 64 measured faster
#: than 32 in 8 of 10 interleaved runs of the step kernel on fig3 (median 30.7 vs 26.5 M
#: replica-steps/s on 2 threads), and 32 faster than 16 (1.3–1.7×).
LANES = 64
