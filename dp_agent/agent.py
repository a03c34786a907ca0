"""DiffusionPolicyAgent: a trained diffusion policy behind the stable-baselines3 ``predict``
signature, with a per-env observation history and action queue (receding horizon).

The sampling path is four hops: ``predict`` (or ``predict_chunk``, ``sample``, ``iter_denoise``)
-> ``_sample`` (histories to tensors, back to NumPy) -> ``DiffusionPolicy.sample`` (the
denoising loop) -> the denoiser network, through the policy's ``runner`` (``set_backend``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from dp_agent.checkpoint import (
    CheckpointError,
    TrainingInfo,
    check_finite,
    check_spaces,
    load_policy,
    save_policy,
)
from dp_agent.config import PolicyConfig
from dp_agent.devices import select_device
from dp_agent.observations import IMAGE, ObservationError
from dp_agent.policy import DenoiseStep, DiffusionPolicy

Generators = torch.Generator | Sequence[torch.Generator]


def noise_stream(seed: int, env_index: int, episode: int) -> torch.Generator:
    """The generator of one env's noise in one episode of a deterministic run: a pure function
    of the agent's seed, the env index and that env's episode count."""
    state = np.random.SeedSequence([seed, env_index, episode]).generate_state(2, np.uint64)
    return torch.Generator().manual_seed(int(state[0] >> np.uint64(1)))


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
        training: TrainingInfo | dict[str, Any] | None = None,
        env_kwargs: dict[str, Any] | None = None,
    ):
        self.device = select_device(device)
        self.policy = policy.to(self.device).eval()
        self.config: PolicyConfig = policy.config
        self.observation_space = observation_space
        self.action_space = action_space
        self.env_id = env_id
        self.env_kwargs = dict(env_kwargs or {})  # e.g. {"obs_type": "keypoints"}
        # what produced the weights (the checkpoint's header; a dict or None for a new policy)
        self.training = (
            training
            if isinstance(training, TrainingInfo)
            else TrainingInfo.from_dict(training or {})
        )
        self.seed = seed
        self.sampler = self.config.sampler
        self.num_inference_steps = self.config.num_inference_steps
        self.num_chunks_sampled = 0  # batched sampling calls, for diagnostics
        self.guidance = None  # predict-time guidance (set_guidance)
        self.best_of = 1  # chunks sampled per re-plan, the best by the guides' J kept
        self._generator = torch.Generator(self.device).manual_seed(seed)
        self.obs_spec = policy.obs_spec  # the parts of an observation
        try:
            self.obs_spec.check_space(observation_space, "observation_space")
        except ObservationError as e:
            raise CheckpointError(str(e)) from None
        self._n_envs = 0
        self._single = False
        self.set_backend("auto")
        self.reset()

    # ---- construction and persistence -------------------------------------------------------
    @classmethod
    def load(
        cls,
        path: str | Path,
        env: gym.Env | None = None,
        device: str | torch.device | None = "auto",
        *,
        seed: int = 0,
    ) -> DiffusionPolicyAgent:
        """Load a checkpoint (stable-baselines3's argument order); with ``env``, check that its
        spaces fit the checkpoint's."""
        if isinstance(env, (str, torch.device)):
            raise TypeError(
                f"load(path, env=None, device='auto'): got {env!r} for env; pass the device by "
                "keyword, e.g. load(path, device='cpu')"
            )
        device = select_device(device)
        policy, header = load_policy(path, device)
        check_finite(path, policy.state_dict(), "model.")  # NaN statistics would act as NaN
        if env is not None:
            check_spaces(path, policy.obs_spec, header.action_space, env, header.env_id)
        return cls(
            policy,
            header.observation_space,
            header.action_space,
            header.env_id,
            device=device,
            seed=seed,
            training=header.training,
            env_kwargs=header.env_kwargs,
        )

    def save(self, path: str | Path, *, half: bool = False, int8: bool = False) -> Path:
        """Write the policy (weights, config, spaces, training metadata) to one file; ``half``
        stores floating-point weights as float16, ``int8`` its matrices as int8 with one scale
        per row (both cast back to float32 on load)."""
        return save_policy(
            path,
            self.policy,
            self.observation_space,
            self.action_space,
            self.env_id,
            self.training,
            env_kwargs=self.env_kwargs,
            half=half,
            int8=int8,
        )

    def set_sampler(self, name: str, num_inference_steps: int | None = None) -> None:
        """Sampler used from the next chunk on ("ddpm", "ddim" or "dpmsolver++"); the step count
        defaults to ``PolicyConfig.default_steps`` (all training steps for DDPM)."""
        sampler = self.policy.make_sampler(name, num_inference_steps)  # validates both
        self.sampler, self.num_inference_steps = name, sampler.num_steps

    def set_backend(self, name: str = "auto", *, whole_chunk: bool = True) -> None:
        """How the denoiser runs: "auto" (the default: the fastest that applies here), "eager"
        (the network's own forward, the reference), "folded", "openvino" or "onnx"; all give
        the same chunks to float32 rounding (``dp_agent.fast.accelerate``)."""
        from dp_agent.fast import accelerate

        self._sampling = accelerate(self.policy, name, whole_chunk=whole_chunk)

    def set_guidance(
        self,
        guides=(),
        *,
        scale: float = 0.1,
        n_steps: int = 2,
        t_stopgrad: int = 1,
        best_of: int = 1,
    ) -> None:
        """Guides (``dp_agent.guides``: J of the chunks (B, Tp, Da) in env units, e.g. a
        ``KeepOut`` on TreeDetour's position actions) that steer every chunk ``predict`` and
        ``predict_chunk`` sample from now on (α = ``scale``; 0 for best-of-N alone);
        ``best_of`` N: ``predict`` samples N chunks per re-plan and keeps the highest J. No
        guides turns guidance off."""
        from dp_agent.guides import Guidance

        self.guidance = Guidance(guides, scale, n_steps, t_stopgrad) if guides else None
        self.best_of = int(best_of) if guides else 1

    def _best_chunks(self, chunks: np.ndarray) -> np.ndarray:
        """(B*N, Tp, Da) -> (B, Tp, Da): per env, the chunk with the highest J (N = best_of)."""
        if self.best_of == 1:
            return chunks
        from dp_agent.guides import best_of

        idx, _ = best_of(torch.as_tensor(chunks), self.guidance.guides, self.best_of)
        return chunks[idx.numpy()]

    def make_env(self, **kwargs) -> gym.Env:
        """The env this policy was trained for, made with its recorded ``env_kwargs`` (by its
        registered id only: ``dp_agent.evaluate.make_env``)."""
        from dp_agent.evaluate import make_env

        if self.env_id is None:
            raise ValueError("this checkpoint records no env id")
        return make_env(self.env_id, {**self.env_kwargs, **kwargs})

    # ---- per-env state ----------------------------------------------------------------------
    def reset(self, n_envs: int | None = None) -> None:
        """Forget every env's history, queue and episode count (and resize to ``n_envs``)."""
        n = self._n_envs if n_envs is None else n_envs
        self._n_envs = n
        to = self.config.obs_horizon
        self._history = {  # per part: (n, To, *shape), images uint8
            p.key: np.zeros((n, to, *p.shape), np.uint8 if p.kind == IMAGE else np.float32)
            for p in self.obs_spec.parts
        }
        self._fresh = np.ones(n, dtype=bool)  # history not started: next obs fills it
        self._queues: list[deque[np.ndarray]] = [deque() for _ in range(n)]
        self._last_plan: list[np.ndarray | None] = [None] * n
        self._episodes = np.full(n, -1)  # episodes started per env (deterministic noise)
        self._streams: list[torch.Generator | None] = [None] * n

    def reset_env(self, i: int) -> None:
        """Start a new episode in env ``i``: clear its history and queue."""
        self._fresh[i] = True
        self._queues[i].clear()
        self._last_plan[i] = None

    @property
    def n_envs(self) -> int:
        return self._n_envs

    def obs_history(self, env_index: int = 0):
        """(To, *obs_shape), or a dict of such per part: the observations the next chunk for
        this env is conditioned on."""
        hist = {k: v[env_index].copy() for k, v in self._history.items()}
        return hist[self.obs_spec.keys[0]] if self.obs_spec.single else hist

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

        ``deterministic=True`` makes the run reproducible, not a mean action: each env draws its
        noise from its own stream (``noise_stream(seed, env index, episode count)``), so the same
        evaluation after ``reset()`` repeats exactly while episodes differ from each other.
        Only the envs whose queue is empty are sampled, in one batched call. The three steps are
        public for callers that plan themselves: ``observe`` -> ``queue_plan`` -> ``act``.
        """
        need = self.observe(observation, episode_start)
        if need:
            generator = [self._stream(i) for i in need] if deterministic else self._generator
            chunks = self._sample(
                {k: v[need] for k, v in self._history.items()},
                self.best_of,
                self.sampler,
                self.num_inference_steps,
                generator,
                guidance=self.guidance,
            )
            chunks = self._best_chunks(chunks)
            for i, chunk in zip(need, chunks, strict=True):
                self.queue_plan(i, chunk)
        actions = self.act()
        return (actions[0] if self._single else actions), state

    def observe(
        self, observation: np.ndarray, episode_start: np.ndarray | None = None
    ) -> list[int]:
        """Push one observation per env into the histories (clearing the envs flagged in
        ``episode_start`` first); returns the envs whose action queue is empty."""
        obs, self._single = self._as_batch(observation)  # per part (n, *shape)
        n = len(next(iter(obs.values())))
        if n != self._n_envs:
            self.reset(n)
        if episode_start is not None:
            for i in np.flatnonzero(np.asarray(episode_start, dtype=bool).reshape(-1)):
                self.reset_env(int(i))
        fresh = self._fresh.any()  # (the common step, none fresh: ~10 µs less per call)
        for i in np.flatnonzero(self._fresh) if fresh else ():  # a new episode's noise stream
            self._episodes[i] += 1
            self._streams[i] = None
        # roll the histories, then fill fresh ones by repeating their first frame
        for key, hist in self._history.items():
            hist[:, :-1] = hist[:, 1:]
            hist[:, -1] = obs[key]
            if fresh:
                hist[self._fresh] = obs[key][self._fresh, None]
        self._fresh[:] = False
        return [i for i, q in enumerate(self._queues) if not q]

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

    def predict_chunk(self, obs_history: np.ndarray, deterministic: bool = False) -> np.ndarray:
        """The executed slice (Ta, Da) for an explicit history (To, *obs_shape), or (B, Ta, Da)
        for (B, To, *obs_shape). Uses and changes no per-env state; ``deterministic`` draws the
        noise from the agent's seed afresh, so equal histories give equal chunks."""
        hist, single = self._as_history_batch(obs_history)
        generator = self._fresh_generator(self.seed) if deterministic else self._generator
        chunks = self._sample(
            hist, 1, self.sampler, self.num_inference_steps, generator, guidance=self.guidance
        )
        chunk = self._executed(chunks)
        return chunk[0] if single else chunk  # (B, Ta, Da)

    def sample(
        self,
        obs_history: np.ndarray,
        num_samples: int = 1,
        *,
        sampler: str | None = None,
        num_inference_steps: int | None = None,
        seed: int | None = None,
        return_trajectory: bool = False,
        on_step: Callable[[DenoiseStep], None] | None = None,
        guides: Sequence = (),
        guide_scale: float = 0.1,
        guide_steps: int = 2,
        t_stopgrad: int = 1,
    ) -> np.ndarray:
        """Whole chunks for an explicit history (To, *obs_shape) or a batch of them.

        Returns (B*N, Tp, Da) (B=1 for one history), or with ``return_trajectory`` every
        denoising iterate: (K+1, B*N, Tp, Da), from pure noise to the final chunk. ``on_step``
        gets each iterate as it is computed (a ``DenoiseStep`` of NumPy arrays, env units).
        The sampler defaults to the agent's, its steps to ``PolicyConfig.default_steps``.
        ``guides`` steer the sampling (``dp_agent.guides.Guidance`` with ``guide_scale`` α,
        ``guide_steps`` and ``t_stopgrad``); without them the agent's ``set_guidance`` applies.
        """
        from dp_agent.guides import Guidance

        guidance = Guidance(guides, guide_scale, guide_steps, t_stopgrad) if guides else None
        hist, _ = self._as_history_batch(obs_history)
        generator = self._generator if seed is None else self._fresh_generator(seed)
        frames: list[np.ndarray] = []

        def collect(step: DenoiseStep) -> None:
            frames.append(step.sample)
            if on_step is not None:
                on_step(step)

        want_steps = return_trajectory or on_step is not None
        sampler = sampler or self.sampler
        if num_inference_steps is None and sampler == self.sampler:
            num_inference_steps = self.num_inference_steps
        chunks = self._sample(
            hist,
            num_samples,
            sampler,
            num_inference_steps,
            generator,
            collect if want_steps else None,
            guidance=guidance or self.guidance,
        )
        return np.stack(frames) if return_trajectory else chunks

    def iter_denoise(self, obs_history: np.ndarray, num_samples: int = 1, **kwargs) -> Iterator:
        """The K+1 iterates of ``sample`` (same arguments) as ``DenoiseStep``s; computed first,
        then yielded (pass ``on_step`` to ``sample`` to see them while they are computed)."""
        steps: list[DenoiseStep] = []
        self.sample(obs_history, num_samples, on_step=steps.append, **kwargs)
        yield from steps

    # ---- internals ------------------------------------------------------------------------------
    def _sample(
        self,
        hist: dict[str, np.ndarray],
        num_samples: int,
        sampler: str,
        num_inference_steps: int | None,
        generator: Generators,
        on_step: Callable[[DenoiseStep], None] | None = None,
        guidance=None,
    ) -> np.ndarray:
        """The one sampling call: histories per part {key: (B, To, *shape)} -> chunks
        (B*N, Tp, Da), env units; ``guidance`` a ``dp_agent.guides.Guidance`` or None."""
        self.num_chunks_sampled += 1
        obs = {k: torch.as_tensor(v, device=self.device) for k, v in hist.items()}
        if self.obs_spec.single:  # the policy takes one (B, To, Do) tensor
            obs = obs[self.obs_spec.keys[0]].flatten(2)

        def to_numpy(step: DenoiseStep) -> None:
            as_np = lambda t: t.float().cpu().numpy()  # noqa: E731
            on_step(DenoiseStep(step.step, step.total, as_np(step.sample), as_np(step.pred_x0)))

        report = to_numpy if on_step is not None else None
        chunks = self._sampling.sample(
            obs, num_samples, sampler, num_inference_steps, generator, report, guidance=guidance
        )
        return chunks.float().cpu().numpy()

    def _stream(self, i: int) -> torch.Generator:
        """Env i's deterministic noise stream for its current episode."""
        if self._streams[i] is None:
            self._streams[i] = noise_stream(self.seed, i, int(self._episodes[i]))
        return self._streams[i]

    def _fresh_generator(self, seed: int) -> torch.Generator:
        return torch.Generator(self.device).manual_seed(seed)

    def _executed(self, chunks: np.ndarray) -> np.ndarray:
        """The executed slice [To-1, To-1+Ta) of chunks (..., Tp, Da), clipped to the action
        space."""
        start = self.config.obs_horizon - 1
        executed = chunks[..., start : start + self.config.action_horizon, :]
        return np.clip(executed, self.action_space.low, self.action_space.high)

    def _as_batch(self, observation) -> tuple[dict[str, np.ndarray], bool]:
        """One observation or a batch (n_envs, ...) -> per part (n, *shape), and whether it was
        one."""
        try:
            return self.obs_spec.as_parts(observation, leading=1)
        except ObservationError as e:
            raise ValueError(f"{e} (checkpoint made for env {self.env_id!r})") from None

    def _as_history_batch(self, obs_history) -> tuple[dict[str, np.ndarray], bool]:
        """A history (To, ...) or a batch of them (B, To, ...), an array or a dict per part ->
        per part (B, To, *shape), and whether it was one."""
        to = self.config.obs_horizon
        try:
            parts, single = self.obs_spec.as_parts(obs_history, leading=2)
        except ObservationError as e:
            raise ValueError(f"history: {e}, To = {to}") from None
        for key, arr in parts.items():
            if arr.shape[1] != to:
                raise ValueError(
                    f"observation history: part {key!r} has {arr.shape[1]} frames, expected {to}"
                )
        return parts, single
