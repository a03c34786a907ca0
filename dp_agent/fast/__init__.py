"""Everything that exists only for speed, kept out of the model's reading path: FiLM folded
once per chunk, the per-step and whole-chunk graphs compiled by OpenVINO or ONNX Runtime,
int8 weights, and the CPU training kernels. Each gives what the eager network gives (to
float32 rounding); the policy's code does not import this package."""
