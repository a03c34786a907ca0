"""The diffusion method apart from any network: the noise schedule, the samplers (step
functions the caller drives) and the denoising iterate. Light to import: the table of sampler
names and ``DenoiseStep`` load no torch."""

# The samplers, by the name used everywhere (CLI, checkpoints, the app) -> the name people read.
SAMPLERS: dict[str, str] = {"ddim": "DDIM", "dpmsolver++": "DPM-Solver++", "ddpm": "DDPM"}
