"""dp-agent: Diffusion Policy as a Gymnasium agent.

Importing the package registers the 2D tasks with Gymnasium; torch loads only when the agent,
the policy or training is first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"
__all__ = ["DiffusionPolicyAgent", "DiffuserAgent", "ChunkedActionWrapper", "__version__"]

if TYPE_CHECKING:  # pragma: no cover
    from dp_agent.agent import DiffusionPolicyAgent
    from dp_agent.planning.agent import DiffuserAgent
    from dp_agent.wrappers import ChunkedActionWrapper


def __getattr__(name: str):
    if name == "DiffusionPolicyAgent":
        from dp_agent.agent import DiffusionPolicyAgent

        return DiffusionPolicyAgent
    if name == "DiffuserAgent":
        from dp_agent.planning.agent import DiffuserAgent

        return DiffuserAgent
    if name == "ChunkedActionWrapper":
        from dp_agent.wrappers import ChunkedActionWrapper

        return ChunkedActionWrapper
    raise AttributeError(f"module 'dp_agent' has no attribute {name!r}")


from dp_agent.envs import register_envs  # noqa: E402  (light: no torch)

register_envs()
