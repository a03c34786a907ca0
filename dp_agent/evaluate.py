"""Policy evaluation over seeded episodes, batched over a vector env (worker processes with
``workers=True``): the task score (mean of each episode's maximum reward), success rate, mean
max coverage and, for TreeDetour, the route shares, each with a 95% interval."""

from __future__ import annotations

import functools
from collections import Counter
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np

from dp_agent.progress import Progress


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a success probability from ``successes`` of ``n`` trials
    (95% for z = 1.96); unlike the normal approximation it stays inside [0, 1] and is honest
    at 0% and 100%."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (float(max(0.0, centre - half)), float(min(1.0, centre + half)))


def bootstrap_interval(
    values, level: float = 0.95, resamples: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (seeded: the same data give the
    same interval)."""
    x = np.asarray(values, dtype=np.float64)
    if len(x) == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), (resamples, len(x)))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(means, [tail, 100 - tail])
    return (float(lo), float(hi))


@dataclass
class EvalResult:
    max_rewards: list[float] = field(default_factory=list)
    successes: list[bool] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    sides: list[str | None] = field(default_factory=list)
    max_coverages: list[float] = field(default_factory=list)  # tasks that report info["coverage"]

    def summary(self) -> dict:
        """Means with 95% intervals (``*_ci``: Wilson for success, bootstrap for the others)."""
        n = len(self.successes)
        if n == 0:
            return {"episodes": 0}
        out = {
            "episodes": n,
            "mean_max_reward": float(np.mean(self.max_rewards)),
            "mean_max_reward_ci": bootstrap_interval(self.max_rewards),
            "success_rate": float(np.mean(self.successes)),
            "success_rate_ci": wilson_interval(int(np.sum(self.successes)), n),
            "mean_length": float(np.mean(self.lengths)),
        }
        if self.max_coverages:
            out["mean_max_coverage"] = float(np.mean(self.max_coverages))
            out["mean_max_coverage_ci"] = bootstrap_interval(self.max_coverages)
        if any(s is not None for s in self.sides):
            counts = Counter(self.sides)
            out["left_share"] = counts["left"] / n
            out["right_share"] = counts["right"] / n
        return out


def make_env(env_id: str, env_kwargs: dict, env_module: str | None = None) -> gym.Env:
    """An env by its registered Gymnasium id, in any process (registers this package's tasks
    first): the one place where an env id read from a file (a checkpoint's, a planner's)
    becomes an env. Gymnasium's ``module:Env`` form, which imports that module, is refused:
    a module is imported only when the caller names it (``env_module``, ``--env-module``)."""
    import dp_agent  # noqa: F401

    if env_module:
        import_env_module(env_module)
    if not isinstance(env_id, str) or ":" in env_id:
        raise ValueError(
            f"env id {env_id!r} is not a registered Gymnasium id (the 'module:Env' form, which "
            "imports a module, is not accepted); import the module that registers it "
            "yourself (dp-agent eval --env-module MODULE) and give the id alone"
        )
    if not isinstance(env_kwargs, dict) or not all(isinstance(k, str) for k in env_kwargs):
        raise ValueError(f"env_kwargs for {env_id!r} must be a dict of named arguments")
    return gym.make(env_id, **env_kwargs)


def import_env_module(name: str) -> None:
    """Import the module ``name`` names (one that registers envs), at the user's request."""
    import importlib

    try:
        importlib.import_module(name)
    except ImportError as e:
        raise ValueError(f"--env-module {name}: cannot import it ({e})") from None


def evaluate(
    agent,
    env_id: str | None = None,
    episodes: int = 50,
    seed: int = 0,
    n_envs: int = 10,
    deterministic: bool = False,
    env_kwargs: dict | None = None,
    progress: Progress | None = None,
    workers: bool = False,
    env_module: str | None = None,
) -> EvalResult:
    """Run ``episodes`` episodes with seeds seed, seed+1, ...; ``n_envs`` at a time in a vector
    env, one batched ``agent.predict`` per step. ``workers`` steps the envs in worker processes
    (gymnasium's ``AsyncVectorEnv``). The env defaults to the agent's own; ``env_module`` is
    imported first in every process (``make_env``)."""
    if episodes < 1 or n_envs < 1:
        raise ValueError(f"episodes and n_envs must be at least 1, got {episodes} and {n_envs}")
    if env_id is None or (env_kwargs is None and env_id == getattr(agent, "env_id", None)):
        env_id = env_id or agent.env_id
        env_kwargs = getattr(agent, "env_kwargs", None)
    n = min(n_envs, episodes)
    fns = [functools.partial(make_env, env_id, dict(env_kwargs or {}), env_module)] * n
    venv = gym.vector.AsyncVectorEnv(fns) if workers else gym.vector.SyncVectorEnv(fns)
    result = EvalResult()
    if hasattr(agent, "reset"):
        agent.reset(n)
    try:
        while len(result.successes) < episodes:
            wanted = min(n, episodes - len(result.successes))
            _run_wave(agent, venv, seed + len(result.successes), wanted, deterministic, result)
            if progress is not None:
                progress.update(len(result.successes), **_scalars(result.summary()))
    finally:
        venv.close()
    return result


def _run_wave(agent, venv, first_seed, wanted, deterministic, result: EvalResult) -> None:
    """One episode in each of the vector env's envs (seeds first_seed, first_seed + 1, ...);
    the first ``wanted`` are recorded. Envs that finish early are stepped on (their results
    ignored) until the wave's last episode ends."""
    n = venv.num_envs
    obs, _ = venv.reset(seed=[first_seed + i for i in range(n)])
    active = np.ones(n, dtype=bool)
    best, length = np.full(n, -np.inf), np.zeros(n, dtype=int)
    success = np.zeros(n, dtype=bool)
    coverage = np.full(n, np.nan)
    side: list[str | None] = [None] * n
    start = np.ones(n, dtype=bool)  # a new episode for the agent in every env
    while active[:wanted].any():
        actions, _ = agent.predict(obs, episode_start=start, deterministic=deterministic)
        start[:] = False
        obs, rewards, terminated, truncated, infos = venv.step(actions)
        for i in np.flatnonzero(active):
            best[i] = max(best[i], float(rewards[i]))
            length[i] += 1
            success[i] |= bool(_info(infos, "is_success", i, False))
            side[i] = _info(infos, "side", i, side[i])
            cov = _info(infos, "coverage", i, None)
            if cov is not None:
                coverage[i] = np.fmax(coverage[i], float(cov))
        active &= ~(terminated | truncated)
    result.max_rewards += best[:wanted].tolist()
    result.successes += success[:wanted].tolist()
    result.lengths += length[:wanted].tolist()
    result.sides += side[:wanted]
    if not np.isnan(coverage[:wanted]).all():
        result.max_coverages += coverage[:wanted].tolist()


def _info(infos: dict, key: str, i: int, default):
    """Env i's ``info[key]`` from a vector env's batched infos (absent where its mask is off)."""
    if key not in infos or not infos.get(f"_{key}", np.ones(i + 1, bool))[i]:
        return default
    return infos[key][i]


def _scalars(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if isinstance(v, (int, float))}
