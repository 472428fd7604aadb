"""Triton kernels (CUDA, or the interpreter with TRITON_INTERPRET=1); import after setting it."""
