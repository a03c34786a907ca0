"""Diffuser-style trajectory planning: a diffusion model of (state, action) trajectories
conditioned by inpainting and steered by guides, the planner that samples it, and the
agent that acts with it."""
