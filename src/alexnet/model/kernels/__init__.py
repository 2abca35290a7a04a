"""The LRN's fused kernels: C for the CPU (``lrn_cpu``, built on first use), Triton for CUDA (``lrn_triton``)."""
