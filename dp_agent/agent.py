"""DiffusionPolicyAgent: a trained diffusion policy behind the stable-baselines3 ``predict``
signature, with a per-env observation history and action queue (receding horizon)."""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from dp_agent.checkpoint import (
    CheckpointError,
    prefixed,
    read_checkpoint,
    space_from_dict,
    space_to_dict,
    write_checkpoint,
)
from dp_agent.config import PolicyConfig, replace_fields
from dp_agent.devices import select_device
from dp_agent.policy import DiffusionPolicy


def default_steps(sampler: str, config: PolicyConfig) -> int:
    """Denoising steps a sampler runs when none are given: DDPM walks every training step, the
    fast samplers use ``config.num_inference_steps``."""
    return config.num_train_steps if sampler == "ddpm" else config.num_inference_steps


@dataclass
class DenoiseFrame:
    """One denoising iterate in environment units; step 0 is pure noise, step ``total`` the plan."""

    step: int
    total: int
    sample: np.ndarray  # (N, Tp, Da)
    pred_x0: np.ndarray  # (N, Tp, Da)


def save_policy(
    path: str | Path,
    policy: DiffusionPolicy,
    observation_space: gym.spaces.Box,
    action_space: gym.spaces.Box,
    env_id: str | None,
    training: dict[str, Any] | None = None,
    *,
    extra_tensors: dict[str, torch.Tensor] | None = None,
    extra_header: dict[str, Any] | None = None,
    half: bool = False,
    env_kwargs: dict[str, Any] | None = None,
) -> Path:
    """Write a policy checkpoint (weights under ``model.``) atomically."""
    header = {
        "policy_config": dataclasses.asdict(policy.config),
        "observation_space": space_to_dict(observation_space),
        "action_space": space_to_dict(action_space),
        "env_id": env_id,
        "env_kwargs": env_kwargs or {},
        "training": training or {},
        **(extra_header or {}),
    }
    tensors = {f"model.{k}": v for k, v in policy.state_dict().items()}
    if half:  # the normaliser statistics stay float32: they set the action units
        tensors = {
            k: v.half() if v.is_floating_point() and "normalizer" not in k else v
            for k, v in tensors.items()
        }
    return write_checkpoint(path, {**tensors, **(extra_tensors or {})}, header)


def load_policy(path: str | Path, device: str | torch.device = "cpu"):
    """-> (policy in eval mode, header)."""
    tensors, header = read_checkpoint(path, device)
    try:
        config = replace_fields(PolicyConfig(), header["policy_config"])
        policy = DiffusionPolicy(config)
        weights = {
            k: v.float() if v.is_floating_point() else v
            for k, v in prefixed(tensors, "model").items()
        }
        policy.load_state_dict(weights)
    except (KeyError, ValueError, RuntimeError) as e:
        raise CheckpointError(
            f"{path}: field 'policy_config' or the weights do not fit ({e})"
        ) from None
    return policy.to(device).eval(), header


class DiffusionPolicyAgent:
    """A diffusion policy that acts like a stable-baselines3 model.

    ``predict`` takes one observation (obs_shape) or a batch (n_envs, *obs_shape). Each env keeps
    its last ``obs_horizon`` observations (padded by repeating the first) and a queue of actions;
    when an env's queue is empty a chunk of ``pred_horizon`` actions is sampled (one batched call
    for all such envs) and actions ``[To-1, To-1+Ta)`` are queued.
    """

    def __init__(
        self,
        policy: DiffusionPolicy,
        observation_space: gym.spaces.Box,
        action_space: gym.spaces.Box,
        env_id: str | None = None,
        *,
        device: str | torch.device | None = None,
        seed: int = 0,
        training: dict[str, Any] | None = None,
        env_kwargs: dict[str, Any] | None = None,
    ):
        self.device = select_device(device)
        self.policy = policy.to(self.device).eval()
        self.config: PolicyConfig = policy.config
        self.observation_space = observation_space
        self.action_space = action_space
        self.env_id = env_id
        self.env_kwargs = dict(env_kwargs or {})  # e.g. {"obs_type": "keypoints"}
        self.training = training or {}
        self.seed = seed
        self.sampler = self.config.sampler
        self.num_inference_steps = self.config.num_inference_steps
        self.num_chunks_sampled = 0  # batched sampling calls, for diagnostics
        self._generator = torch.Generator(self.device).manual_seed(seed)
        obs_dim = int(np.prod(observation_space.shape))
        if obs_dim != self.config.obs_dim:
            raise CheckpointError(
                f"observation_space has {obs_dim} values per frame but the policy expects "
                f"{self.config.obs_dim}"
            )
        self._n_envs = 0
        self._single = False
        self.reset()

    # ---- construction and persistence -------------------------------------------------------
    @classmethod
    def load(
        cls,
        path: str | Path,
        device: str | torch.device | None = None,
        *,
        env: gym.Env | None = None,
        seed: int = 0,
    ) -> DiffusionPolicyAgent:
        """Load a checkpoint; with ``env``, check that its spaces fit the checkpoint's."""
        device = select_device(device)
        policy, header = load_policy(path, device)
        obs_space = space_from_dict(header["observation_space"])
        act_space = space_from_dict(header["action_space"])
        if env is not None:
            check_spaces(path, obs_space, act_space, env, header.get("env_id"))
        return cls(
            policy,
            obs_space,
            act_space,
            header.get("env_id"),
            device=device,
            seed=seed,
            training=header.get("training"),
            env_kwargs=header.get("env_kwargs"),
        )

    def save(self, path: str | Path, *, half: bool = False) -> Path:
        """Write the policy (weights, config, spaces, training metadata) to one file.

        ``half`` stores floating-point weights as float16 (half the size); they are cast back
        to float32 on load.
        """
        return save_policy(
            path,
            self.policy,
            self.observation_space,
            self.action_space,
            self.env_id,
            self.training,
            half=half,
            env_kwargs=self.env_kwargs,
        )

    def set_sampler(self, name: str, num_inference_steps: int | None = None) -> None:
        """Sampler used from the next chunk on: "ddpm", "ddim" or "dpmsolver++"; the step count
        defaults to ``default_steps`` (all training steps for DDPM, the config's otherwise)."""
        from dp_agent.schedulers import make_sampler

        steps = num_inference_steps or default_steps(name, self.config)
        make_sampler(name, self.policy.schedule, steps)  # validates name and step count
        self.sampler, self.num_inference_steps = name, steps

    def make_env(self, **kwargs) -> gym.Env:
        """The env this policy was trained for, made with its recorded ``env_kwargs``."""
        if self.env_id is None:
            raise ValueError("this checkpoint records no env id")
        return gym.make(self.env_id, **{**self.env_kwargs, **kwargs})

    # ---- per-env state ----------------------------------------------------------------------
    def reset(self, n_envs: int | None = None) -> None:
        """Forget every env's history and queue (and resize to ``n_envs`` if given)."""
        n = self._n_envs if n_envs is None else n_envs
        self._n_envs = n
        self._history = np.zeros((n, self.config.obs_horizon, self.config.obs_dim), np.float32)
        self._fresh = np.ones(n, dtype=bool)  # history not started: next obs fills it
        self._queues: list[deque[np.ndarray]] = [deque() for _ in range(n)]
        self._last_plan: list[np.ndarray | None] = [None] * n

    def reset_env(self, i: int) -> None:
        self._fresh[i] = True
        self._queues[i].clear()
        self._last_plan[i] = None

    @property
    def n_envs(self) -> int:
        return self._n_envs

    def obs_history(self, env_index: int = 0) -> np.ndarray:
        """(To, Do): the observations the next chunk for this env is conditioned on."""
        return self._history[env_index].copy()

    def queued_actions(self, env_index: int = 0) -> np.ndarray:
        """(n, Da): actions still queued for this env, next one first."""
        q = self._queues[env_index]
        return np.stack(q) if q else np.zeros((0, self.config.action_dim), np.float32)

    def last_plan(self, env_index: int = 0) -> np.ndarray | None:
        """(Tp, Da): the last chunk sampled for this env, or None."""
        return self._last_plan[env_index]

    # ---- acting ---------------------------------------------------------------------------------
    def predict(
        self,
        observation: np.ndarray,
        state: Any = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, None]:
        """Next action for one observation, or for each env of a batch; SB3's signature.

        ``deterministic=True`` makes sampling reproducible (fixed noise per chunk), not a mean.
        The three steps are public for callers that plan themselves (the app's live view):
        ``observe`` -> ``queue_plan`` for the envs it returns -> ``act``.
        """
        need = self.observe(observation, episode_start)
        if need and deterministic:
            # sample every env's row so that env i always gets noise row i of the fixed seed,
            # whichever other envs re-plan at the same moment
            chunks = self._sample(self._history, 1, deterministic=True)  # (n_envs, Tp, Da)
            for i in need:
                self.queue_plan(i, chunks[i])
        elif need:
            chunks = self._sample(self._history[need], 1, deterministic=False)  # (len(need), ...)
            for i, chunk in zip(need, chunks, strict=True):
                self.queue_plan(i, chunk)
        actions = self.act()
        return (actions[0] if self._single else actions), state

    def observe(
        self, observation: np.ndarray, episode_start: np.ndarray | None = None
    ) -> list[int]:
        """Push one observation per env into the histories (clearing the envs flagged in
        ``episode_start`` first); returns the envs whose action queue is empty."""
        obs, self._single = self._as_batch(observation)  # (n, Do)
        n = obs.shape[0]
        if n != self._n_envs:
            self.reset(n)
        if episode_start is not None:
            for i in np.flatnonzero(np.asarray(episode_start, dtype=bool).reshape(-1)):
                self.reset_env(int(i))
        # roll the histories, then fill fresh ones by repeating their first frame
        self._history[:, :-1] = self._history[:, 1:]
        self._history[:, -1] = obs
        self._history[self._fresh] = obs[self._fresh, None, :]
        self._fresh[:] = False
        return [i for i in range(n) if not self._queues[i]]

    def queue_plan(self, env_index: int, chunk: np.ndarray) -> None:
        """Make ``chunk`` (Tp, Da) env ``env_index``'s plan: queue its executed slice
        ``[To-1, To-1+Ta)``, replacing whatever was queued."""
        chunk = np.asarray(chunk, dtype=np.float32)
        expected = (self.config.pred_horizon, self.config.action_dim)
        if chunk.shape != expected:
            raise ValueError(f"a plan has shape {expected}, got {chunk.shape}")
        self._last_plan[env_index] = chunk
        self._queues[env_index] = deque(self._executed(chunk))

    def act(self) -> np.ndarray:
        """Pop the next queued action of every env: (n_envs, Da), clipped to the action space."""
        empty = [i for i, q in enumerate(self._queues) if not q]
        if empty:
            raise RuntimeError(f"no queued action for envs {empty}: observe and plan first")
        return np.stack([q.popleft() for q in self._queues])  # (n, Da), clipped when queued

    def _executed(self, chunks: np.ndarray) -> np.ndarray:
        """The executed slice [To-1, To-1+Ta) of chunks (..., Tp, Da), clipped to the action
        space."""
        start = self.config.obs_horizon - 1
        executed = chunks[..., start : start + self.config.action_horizon, :]
        return np.clip(executed, self.action_space.low, self.action_space.high)

    def predict_chunk(self, obs_history: np.ndarray, deterministic: bool = False) -> np.ndarray:
        """The executed slice (Ta, Da) for an explicit history (To, *obs_shape), or (B, Ta, Da)
        for (B, To, *obs_shape). Uses and changes no per-env state."""
        hist, single = self._as_history_batch(obs_history)
        chunk = self._executed(self._sample(hist, 1, deterministic))  # (B, Ta, Da)
        return chunk[0] if single else chunk

    def sample(
        self,
        obs_history: np.ndarray,
        num_samples: int = 1,
        *,
        sampler: str | None = None,
        num_inference_steps: int | None = None,
        seed: int | None = None,
        return_trajectory: bool = False,
    ) -> np.ndarray:
        """Whole chunks for an explicit history (To, *obs_shape) or a batch of them.

        Returns (B*N, Tp, Da) (B=1 for one history), or with ``return_trajectory`` every
        denoising iterate: (K+1, B*N, Tp, Da), from pure noise to the final chunk.
        """
        if return_trajectory:
            frames = self.iter_denoise(
                obs_history, num_samples, sampler=sampler,
                num_inference_steps=num_inference_steps, seed=seed,
            )  # fmt: skip
            return np.stack([f.sample for f in frames])
        hist, _ = self._as_history_batch(obs_history)
        return self._chunks(hist, num_samples, self._generator_for(seed), sampler,
                            num_inference_steps)  # fmt: skip

    def iter_denoise(
        self,
        obs_history: np.ndarray,
        num_samples: int = 1,
        *,
        sampler: str | None = None,
        num_inference_steps: int | None = None,
        seed: int | None = None,
    ) -> Iterator[DenoiseFrame]:
        """Yield the K+1 iterates of sampling ``num_samples`` chunks, as they are computed."""
        hist, _ = self._as_history_batch(obs_history)
        obs = torch.as_tensor(hist, device=self.device)
        sampler, steps = self._resolve_sampler(sampler, num_inference_steps)
        unnorm = self.policy.action_normalizer.unnormalize
        for step in self.policy.iter_denoise(
            obs, num_samples, sampler, steps, self._generator_for(seed)
        ):
            yield DenoiseFrame(
                step.step,
                step.total,
                unnorm(step.sample).cpu().numpy(),
                unnorm(step.pred_x0).cpu().numpy(),
            )

    # ---- internals ------------------------------------------------------------------------------
    def _resolve_sampler(self, sampler: str | None, steps: int | None) -> tuple[str, int]:
        """This agent's sampler and step count where a call leaves them out."""
        sampler = sampler or self.sampler
        if steps is None:
            steps = self.num_inference_steps if sampler == self.sampler else None
        return sampler, steps or default_steps(sampler, self.config)

    def _generator_for(self, seed: int | None) -> torch.Generator:
        """A fresh generator for an explicit seed, else the agent's running one."""
        if seed is None:
            return self._generator
        return torch.Generator(self.device).manual_seed(seed)

    def _chunks(self, hist, num_samples, generator, sampler=None, num_inference_steps=None):
        """Final chunks (B*N, Tp, Da) in env units for histories (B, To, Do)."""
        sampler, steps = self._resolve_sampler(sampler, num_inference_steps)
        obs = torch.as_tensor(hist, device=self.device)
        chunks = self.policy.sample(
            obs, num_samples, sampler=sampler, num_inference_steps=steps, generator=generator
        )
        return chunks.float().cpu().numpy()

    def _sample(self, hist: np.ndarray, num_samples: int, deterministic: bool) -> np.ndarray:
        """A plan for each history, with fixed noise when deterministic (predict's sampling)."""
        self.num_chunks_sampled += 1
        generator = self._generator_for(self.seed if deterministic else None)
        return self._chunks(hist, num_samples, generator)

    def _as_batch(self, observation) -> tuple[np.ndarray, bool]:
        obs = np.asarray(observation, dtype=np.float32)
        shape = self.observation_space.shape
        if obs.shape == shape:
            return obs.reshape(1, -1), True
        if obs.ndim == len(shape) + 1 and obs.shape[1:] == shape:
            return obs.reshape(len(obs), -1), False
        raise ValueError(
            f"observation has shape {obs.shape}; this agent expects {shape} or (n_envs, "
            f"*{shape}) (checkpoint made for env {self.env_id!r})"
        )

    def _as_history_batch(self, obs_history) -> tuple[np.ndarray, bool]:
        hist = np.asarray(obs_history, dtype=np.float32)
        shape = (self.config.obs_horizon, *self.observation_space.shape)
        if hist.shape == shape:
            return hist.reshape(1, shape[0], -1), True
        if hist.shape[1:] == shape:
            return hist.reshape(len(hist), shape[0], -1), False
        raise ValueError(
            f"observation history has shape {hist.shape}; expected {shape} or (B, *{shape})"
        )


def check_spaces(path, obs_space, act_space, env: gym.Env, env_id: str | None) -> None:
    """Raise CheckpointError when an env's spaces differ from the checkpoint's."""
    for name, mine, theirs in (
        ("observation_space", obs_space, env.observation_space),
        ("action_space", act_space, env.action_space),
    ):
        if not isinstance(theirs, gym.spaces.Box) or theirs.shape != mine.shape:
            raise CheckpointError(
                f"{path}: field '{name}' has shape {mine.shape} (trained on {env_id!r}), but the "
                f"env's {name} is {theirs}"
            )
