"""The denoising networks (the FiLM 1-D temporal U-Net, the transformer) and the observation
encoders (an MLP for vectors, a GroupNorm ResNet for images). Plain PyTorch modules: what
exists only for speed lives in ``dp_agent.fast``."""
