"""Code generation: kernel groups (from fusion) to kernel data (the kernel IR, template
parameters, GEMM specs), then a backend's renderer to source, last (see ARCHITECTURE.md)."""
