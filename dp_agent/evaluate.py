"""Policy evaluation over seeded episodes, batched over several envs: the task score (mean of
each episode's maximum reward), success rate and, for TreeDetour, the route shares."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np

from dp_agent.progress import Progress


@dataclass
class EvalResult:
    max_rewards: list[float] = field(default_factory=list)
    successes: list[bool] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    sides: list[str | None] = field(default_factory=list)
    max_coverages: list[float] = field(default_factory=list)  # tasks that report info["coverage"]

    def summary(self) -> dict:
        n = len(self.successes)
        out = {
            "episodes": n,
            "mean_max_reward": float(np.mean(self.max_rewards)) if n else float("nan"),
            "success_rate": float(np.mean(self.successes)) if n else float("nan"),
            "mean_length": float(np.mean(self.lengths)) if n else float("nan"),
        }
        if self.max_coverages:
            out["mean_max_coverage"] = float(np.mean(self.max_coverages))
        if any(s is not None for s in self.sides):
            counts = Counter(self.sides)
            out["left_share"] = counts["left"] / n
            out["right_share"] = counts["right"] / n
        return out


def evaluate(
    agent,
    env_id: str | None = None,
    episodes: int = 50,
    seed: int = 0,
    n_envs: int = 10,
    deterministic: bool = False,
    env_kwargs: dict | None = None,
    progress: Progress | None = None,
) -> EvalResult:
    """Run ``episodes`` episodes with seeds seed, seed+1, ...; ``n_envs`` at a time, batched.

    The env defaults to the agent's own (``agent.env_id`` made with ``agent.env_kwargs``).
    """
    if env_id is None or (env_kwargs is None and env_id == getattr(agent, "env_id", None)):
        env_id = env_id or agent.env_id
        env_kwargs = getattr(agent, "env_kwargs", None)
    result = EvalResult()
    envs = [gym.make(env_id, **(env_kwargs or {})) for _ in range(min(n_envs, episodes))]
    done_episodes = 0
    try:
        while done_episodes < episodes:
            wave = envs[: episodes - done_episodes]
            obs = np.stack([e.reset(seed=seed + done_episodes + i)[0] for i, e in enumerate(wave)])
            agent.reset(len(wave))
            active = np.ones(len(wave), dtype=bool)
            best = np.full(len(wave), -np.inf)
            success = np.zeros(len(wave), dtype=bool)
            length = np.zeros(len(wave), dtype=int)
            side: list[str | None] = [None] * len(wave)
            coverage = np.full(len(wave), np.nan)
            while active.any():
                actions, _ = agent.predict(obs, deterministic=deterministic)
                for i in np.flatnonzero(active):
                    o, r, term, trunc, info = wave[i].step(actions[i])
                    obs[i] = o
                    best[i] = max(best[i], float(r))
                    success[i] |= bool(info.get("is_success", False))
                    side[i] = info.get("side", side[i])
                    if "coverage" in info:
                        coverage[i] = np.fmax(coverage[i], info["coverage"])
                    length[i] += 1
                    if term or trunc:
                        active[i] = False
            result.max_rewards += best.tolist()
            result.successes += success.tolist()
            result.lengths += length.tolist()
            result.sides += side
            if not np.isnan(coverage).all():
                result.max_coverages += coverage.tolist()
            done_episodes += len(wave)
            if progress is not None:
                progress.update(done_episodes, **result.summary())
    finally:
        for e in envs:
            e.close()
    return result
