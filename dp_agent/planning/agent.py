"""DiffuserAgent: a trajectory planner behind the stable-baselines3 ``predict`` signature. Each
env plans H steps from its observed state to its goal (one batched call for the envs that
re-plan), executes by tracking the plan, and re-plans every ``replan_every`` steps.

The call path of a plan: ``predict`` -> ``_replan`` (batch, noise streams, warm starts) ->
``Planner.plan`` (start/goal conditions, guidance) -> ``DiffusionPolicy.sample`` (the one
denoising loop, inpainting and guidance inside it) -> the denoiser network.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from dp_agent.agent import noise_stream
from dp_agent.planning.planner import Plan, Planner


class DiffuserAgent:
    """Plans with a ``Planner`` and acts like a stable-baselines3 model.

    Observations are Dicts with the planner's state part (``observation``: x, y, vx, vy) and goal
    part (``desired_goal``), one or a batch (n_envs, ...). ``execute``: "track" (default) follows
    the plan's waypoints with a PD law on position and velocity, a = kp (p* - p) + kd (v* - v)
    with (p*, v*) the planned state ``lookahead`` steps ahead, plus the planned action as feed
    forward; "actions" replays the planned actions open loop. ``num_samples`` > 1 plans N per env
    and keeps the one with the highest J of ``guides`` (best-of-N). ``warm_step`` > 0 starts each
    re-plan from the previous plan, shifted by the steps executed, re-noised to denoising step
    ``warm_step`` of K: K - warm_step network calls instead of K.
    """

    def __init__(
        self,
        planner: Planner,
        *,
        seed: int = 0,
        replan_every: int = 8,
        execute: str = "track",
        kp: float = 2.0,
        kd: float = 0.3,
        lookahead: int = 1,
        guides=(),
        guide_scale: float = 0.1,
        guide_steps: int = 2,
        t_stopgrad: int = 1,
        num_samples: int = 1,
        sampler: str | None = None,
        num_inference_steps: int | None = None,
        warm_step: int = 0,
    ):
        if execute not in ("track", "actions"):
            raise ValueError(f"execute must be 'track' or 'actions', got {execute!r}")
        if not 1 <= replan_every <= planner.horizon - 1:
            raise ValueError(f"replan_every must be in [1, H-1 = {planner.horizon - 1}]")
        self.planner, self.seed = planner, seed
        self.replan_every, self.execute = replan_every, execute
        self.kp, self.kd, self.lookahead = kp, kd, lookahead
        self.guides, self.num_samples, self.warm_step = tuple(guides), num_samples, warm_step
        self.guidance = dict(
            guide_scale=guide_scale, guide_steps=guide_steps, t_stopgrad=t_stopgrad
        )
        self.sampler, self.num_inference_steps = sampler, num_inference_steps
        info = planner.info
        self.state_key, self.goal_key = info.state_key, info.goal_key
        self.observation_space, self.action_space = info.env_spaces or (None, None)
        self.env_id, self.env_kwargs = planner.env_id, planner.env_kwargs
        self.num_plans = 0  # batched planning calls, for diagnostics
        self._generator = torch.Generator(planner.device).manual_seed(seed)
        self.reset(0)

    @classmethod
    def load(cls, path: str | Path, env=None, device: str | torch.device = "auto", **kwargs):
        """Load a planner file (stable-baselines3's argument order; ``env`` is accepted for
        symmetry with ``DiffusionPolicyAgent.load`` and not needed); ``kwargs`` go to
        ``DiffuserAgent``. Non-finite weights or normaliser statistics are refused
        (``CheckpointError``, by ``Planner.load``)."""
        return cls(Planner.load(path, device), **kwargs)

    def save(self, path: str | Path, *, half: bool = False) -> Path:
        """Write the planner (``Planner.save``); the agent's settings are arguments of
        ``load``, not part of the file."""
        return self.planner.save(path, half=half)

    def make_env(self, **kwargs):
        """The env this planner was trained for, by its registered id
        (``dp_agent.evaluate.make_env``), with its recorded ``env_kwargs``."""
        from dp_agent.evaluate import make_env

        if self.env_id is None:
            raise ValueError("this planner records no env id")
        return make_env(self.env_id, {**self.env_kwargs, **kwargs})

    # ---- per-env state ----------------------------------------------------------------------
    def reset(self, n_envs: int | None = None) -> None:
        """Forget every env's plan and episode count (and resize to ``n_envs``)."""
        n = self._n if n_envs is None else n_envs
        self._n = n
        self._plans: list[Plan | None] = [None] * n  # each (1, H, .) rows
        self._since = np.zeros(n, dtype=int)  # steps executed of the current plan
        self._episodes = np.full(n, -1)
        self._streams: list[torch.Generator | None] = [None] * n
        self._fresh = np.ones(n, dtype=bool)

    def last_plan(self, env_index: int = 0) -> Plan | None:
        """The plan env ``env_index`` is executing (states (1, H, Ds), actions (1, H, Da))."""
        return self._plans[env_index]

    # ---- acting -----------------------------------------------------------------------------
    def predict(self, observation, state: Any = None, episode_start=None, deterministic=False):
        """Next action (Da,) for one observation, or (n_envs, Da) for a batch; SB3's signature.
        ``deterministic=True``: each env plans with its own noise stream (seed, env index,
        episode count), so an evaluation repeats exactly after ``reset()``."""
        states, goals, single = self._as_batch(observation)
        n = len(states)
        if n != self._n:
            self.reset(n)
        if episode_start is not None:
            for i in np.flatnonzero(np.asarray(episode_start, dtype=bool).reshape(-1)):
                self._plans[i], self._fresh[i] = None, True
        for i in np.flatnonzero(self._fresh):
            self._episodes[i] += 1
            self._streams[i], self._fresh[i] = None, False
        need = [
            i for i in range(n) if self._plans[i] is None or self._since[i] >= self.replan_every
        ]
        if need:
            self._replan(need, states, goals, deterministic)
        actions = np.stack([self._action(i, states[i]) for i in range(n)])
        self._since += 1
        return (actions[0] if single else actions), state

    def plan(
        self,
        observation,
        *,
        goal=None,
        guides=(),
        num_samples: int = 1,
        return_trajectory: bool = False,
        seed: int | None = None,
    ) -> Plan:
        """Plans for one observation or a batch: states (B*N, H, Ds), actions (B*N, H, Da),
        env units, start inpainted at step 0 and the goal position (``goal`` (2,) or (B, 2),
        default the observed goal) at step H-1; every iterate with ``return_trajectory``."""
        states, goals, _ = self._as_batch(observation)
        position = (
            None
            if goal is None
            else np.broadcast_to(np.asarray(goal, np.float32), (len(states), 2))
        )
        g = (
            self._generator
            if seed is None
            else torch.Generator(self.planner.device).manual_seed(seed)
        )
        return self.planner.plan(
            states,
            goals,
            goal_position=position,
            guides=guides or self.guides,
            num_samples=num_samples,
            sampler=self.sampler,
            num_inference_steps=self.num_inference_steps,
            generator=g,
            return_trajectory=return_trajectory,
            **self.guidance,
        )

    # ---- internals ------------------------------------------------------------------------------
    def _replan(self, need: list[int], states, goals, deterministic: bool) -> None:
        """One batched planning call for the envs in ``need``; each keeps its best plan."""
        self.num_plans += 1
        for guide in self.guides:  # per-env guides learn which envs the rows are
            if hasattr(guide, "bind"):
                guide.bind(need, self.num_samples)
        generator = [self._stream(i) for i in need] if deterministic else self._generator
        warm, warm_step = self._warm_starts(need), self.warm_step
        if warm is None:
            warm_step = 0
        plans = self.planner.plan(
            states[need],
            None if goals is None else goals[need],
            guides=self.guides,
            num_samples=self.num_samples,
            sampler=self.sampler,
            num_inference_steps=self.num_inference_steps,
            generator=generator,
            warm=warm,
            warm_step=warm_step,
            **self.guidance,
        ).best(self.num_samples)
        for row, i in enumerate(need):
            self._plans[i] = Plan(plans.states[row : row + 1], plans.actions[row : row + 1])
            self._since[i] = 0

    def _warm_starts(self, need: list[int]) -> np.ndarray | None:
        """(len(need)*N, H, D): each env's plan shifted by the steps it executed (the last step
        repeated), when warm starts are on and every env in ``need`` has one; else None."""
        if self.warm_step <= 0 or any(self._plans[i] is None for i in need):
            return None
        rows = []
        for i in need:
            p = self._plans[i]
            traj = np.concatenate([p.states[0], p.actions[0]], axis=1)  # (H, D)
            k = int(self._since[i])
            shifted = np.concatenate([traj[k:], np.repeat(traj[-1:], k, axis=0)])
            rows.extend([shifted] * self.num_samples)
        return np.stack(rows)

    def _action(self, i: int, state: np.ndarray) -> np.ndarray:
        p, k = self._plans[i], int(self._since[i])
        h = self.planner.horizon
        if self.execute == "actions":
            a = p.actions[0, min(k, h - 1)]
        else:
            target = p.states[0, min(k + self.lookahead, h - 1)]
            pos = list(self.planner.position_dims)
            vel = list(self.planner.info.velocity_dims)
            a = p.actions[0, min(k, h - 1)] + self.kp * (target[pos] - state[pos])
            if vel:
                a = a + self.kd * (target[vel] - state[vel])
        if self.action_space is not None:
            a = np.clip(a, self.action_space.low, self.action_space.high)
        return np.asarray(a, np.float32)

    def _stream(self, i: int) -> torch.Generator:
        if self._streams[i] is None:
            self._streams[i] = noise_stream(self.seed, i, int(self._episodes[i]))
        return self._streams[i]

    def _as_batch(self, observation):
        """-> states (n, Ds), goals (n, Dg) or None, and whether one observation was given."""
        if isinstance(observation, dict):
            states = np.asarray(
                observation[self.state_key] if self.state_key else observation, np.float32
            )
            goals = (
                None if not self.goal_key else np.asarray(observation[self.goal_key], np.float32)
            )
        else:
            states, goals = np.asarray(observation, np.float32), None
        single = states.ndim == 1
        states = states.reshape(-1, self.planner.state_dim)
        if goals is not None:
            goals = goals.reshape(len(states), -1)
        return states, goals, single
