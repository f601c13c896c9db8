"""Code generation: kernel IR to OpenCL C."""
