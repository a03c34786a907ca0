"""Everything that exists only for speed, kept out of the model's reading path: FiLM folded
once per chunk, the per-step and whole-chunk graphs compiled by OpenVINO or ONNX Runtime,
int8 weights, and the CPU training kernels. Each gives what the eager network gives (to
float32 rounding); the policy's code does not import this package."""


def accelerate(policy, backend: str = "auto", *, whole_chunk: bool = True, rebuild: bool = False):
    """Run ``policy``'s denoiser through ``backend`` from now on (see ``dp_agent.fast.backends``);
    returns the policy."""
    policy.set_backend(backend, rebuild=rebuild, whole_chunk=whole_chunk)
    return policy
