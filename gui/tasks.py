"""A Gymnasium environment as the app sees it: a frame to draw, a view extent, and the mapping
between points in the view and actions.

The dp_agent tasks live in a ``world_size`` x ``world_size`` world whose actions are absolute
(x, y) targets in world units. Any other Gymnasium id works when its env renders ``rgb_array``
and has a ``Box`` action space: the view is then the unit square, and a point (u, v) sets the
first action dimension from u (left = low) and the second from v (top = high).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

DEFAULT_FPS = 30.0


class TaskError(ValueError):
    """An env id the app cannot use, with a message that says why and what is expected."""


def registered_tasks() -> list[str]:
    """The ``dp_agent/*`` ids registered with Gymnasium, sorted."""
    import dp_agent  # noqa: F401  (registers the envs)

    return sorted(env_id for env_id in gym.registry if env_id.startswith("dp_agent/"))


class Task:
    """One live environment plus what the app needs to draw it and to turn points into actions.

    Build it with :meth:`Task.make`, which validates the id.
    """

    def __init__(self, env_id: str, env: gym.Env, first_obs: Any, first_info: dict | None = None):
        self.env_id = env_id
        self.env = env
        self.obs = first_obs
        # what the env's info reports at reset, e.g. PushT's "coverage" (TreeDetour has none)
        self.reports_coverage = "coverage" in (first_info or {})
        space = env.action_space
        self.action_low = np.where(np.isfinite(space.low), space.low, -1.0).astype(np.float32)
        self.action_high = np.where(np.isfinite(space.high), space.high, 1.0).astype(np.float32)
        self.action_dim = int(space.shape[0])
        world = getattr(env.unwrapped, "world_size", None)
        self.world_size: float | None = float(world) if world else None
        fps = env.metadata.get("render_fps") or DEFAULT_FPS
        self.fps = float(fps)
        self._render_frame = getattr(env.unwrapped, "render_frame", None)
        self._force = getattr(env.unwrapped, "force_toward", None)  # point -> force (Maze2D)

    # ------------------------------------------------------------------ creation and checks
    @classmethod
    def make(cls, env_id: str, seed: int | None = None, env_kwargs: dict | None = None) -> Task:
        """Create and validate the env (with ``env_kwargs``, e.g. a policy's obs_type); raise
        :class:`TaskError` with a readable message."""
        env_id = env_id.strip()
        if not env_id:
            raise TaskError("No task given: type a Gymnasium id such as dp_agent/PushT-v0.")
        import dp_agent  # noqa: F401  (registers the dp_agent tasks)

        if env_id not in gym.registry:
            raise TaskError(
                f"Task {env_id!r}: no Gymnasium environment is registered under this id "
                "(expected a registered id such as dp_agent/TreeDetour-v0 or Pendulum-v1)."
            )
        try:
            env = gym.make(env_id, render_mode="rgb_array", **(env_kwargs or {}))
        except Exception as exc:  # noqa: BLE001  (any construction failure becomes one message)
            raise TaskError(
                f"Task {env_id!r}: the environment could not be created: {exc}"
            ) from exc
        try:
            modes = env.metadata.get("render_modes") or []
            if "rgb_array" not in modes and getattr(env.unwrapped, "render_frame", None) is None:
                raise TaskError(
                    f"Task {env_id!r}: metadata['render_modes'] is {list(modes)}; the app needs an "
                    "environment that renders 'rgb_array'."
                )
            if not isinstance(env.action_space, gym.spaces.Box) or len(env.action_space.shape) != 1:
                raise TaskError(
                    f"Task {env_id!r}: action_space is {env.action_space}; the app needs a "
                    "continuous Box action space of shape (Da,)."
                )
            obs, info = env.reset(seed=seed)
            task = cls(env_id, env, obs, info)
            frame = task.frame()
            if not (
                isinstance(frame, np.ndarray)
                and frame.ndim == 3
                and frame.shape[2] == 3
                and frame.dtype == np.uint8
            ):
                got = getattr(frame, "shape", type(frame).__name__)
                raise TaskError(
                    f"Task {env_id!r}: render() returned {got}; expected an (H, W, 3) uint8 image."
                )
        except TaskError:
            env.close()
            raise
        except Exception as exc:  # noqa: BLE001
            env.close()
            raise TaskError(f"Task {env_id!r}: reset or render failed: {exc}") from exc
        return task

    # ------------------------------------------------------------------ env
    def reset(self, seed: int | None = None) -> Any:
        self.obs, _ = self.env.reset(seed=seed)
        return self.obs

    def step(self, action: np.ndarray) -> tuple[Any, float, bool, bool, dict]:
        obs, reward, terminated, truncated, info = self.env.step(np.asarray(action, np.float32))
        self.obs = obs
        return obs, float(reward), bool(terminated), bool(truncated), info

    def frame(self, size: int = 512) -> np.ndarray:
        """The current state as an (H, W, 3) uint8 image."""
        if self._render_frame is not None:
            return self._render_frame(size)
        return self.env.render()

    def close(self) -> None:
        self.env.close()

    @property
    def env_args(self) -> dict[str, Any]:
        """robomimic-style env_args for the demo file (the store adds robomimic's gym "type")."""
        spec = self.env.spec
        kwargs = dict(spec.kwargs) if spec is not None else {}
        kwargs.pop("render_mode", None)
        return {"env_name": self.env_id, "env_kwargs": kwargs}

    def reset_to_state(self, state: np.ndarray) -> bool:
        """Put the env in a stored state: ``unwrapped.reset_to_state(state)`` when it has one,
        else ``reset(options={"reset_to_state": state})``. True when the env's observation then
        equals ``state`` (so drawing it shows that state)."""
        state = np.asarray(state, np.float64)
        method = getattr(self.env.unwrapped, "reset_to_state", None)
        try:
            if callable(method):
                result = method(state)
                obs = result[0] if isinstance(result, tuple) else result
                if obs is None:
                    obs = getattr(self.env.unwrapped, "_obs", lambda: None)()
            else:
                obs, _ = self.env.reset(options={"reset_to_state": state})
        except Exception:  # noqa: BLE001  (env without that option: caller falls back)
            return False
        if obs is None or not isinstance(obs, np.ndarray) or obs.shape != state.shape:
            return False
        self.obs = obs
        return bool(np.allclose(obs, state, atol=1e-3, rtol=1e-4))

    # ------------------------------------------------------------------ view <-> actions
    @property
    def extent(self) -> tuple[float, float]:
        """Size of the view in view units: (world_size, world_size), or (1, 1) for other envs."""
        if self.world_size is not None:
            return (self.world_size, self.world_size)
        return (1.0, 1.0)

    @property
    def draws_actions(self) -> bool:
        """True when actions are points in the view (dp_agent tasks): plans can be overlaid.
        Force-controlled tasks (an env with ``force_toward``) are steered, not drawn."""
        return self.world_size is not None and self.action_dim == 2 and self._force is None

    def clamp_point(self, point: np.ndarray) -> np.ndarray:
        ex, ey = self.extent
        return np.clip(np.asarray(point, np.float64), (0.0, 0.0), (ex, ey))

    def action_from_point(self, point: np.ndarray) -> np.ndarray:
        """A view point (x, y) -> the action (Da,) float32 it stands for."""
        x, y = self.clamp_point(point)
        if self._force is not None:  # a force-controlled task: steer towards the point
            return np.asarray(self._force((x, y)), np.float32)
        if self.world_size is not None and self.action_dim == 2:
            return np.clip(np.array([x, y], np.float32), self.action_low, self.action_high)
        action = (self.action_low + self.action_high) / 2.0
        span = self.action_high - self.action_low
        action[0] = self.action_low[0] + x * span[0]
        if self.action_dim > 1:
            action[1] = self.action_high[1] - y * span[1]
        return action.astype(np.float32)

    def point_from_action(self, action: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`action_from_point` for the first two action dimensions."""
        a = np.asarray(action, np.float64)
        if self.draws_actions:
            return a[..., :2]
        span = np.maximum(self.action_high - self.action_low, 1e-9)
        x = (a[..., 0] - self.action_low[0]) / span[0]
        y = (self.action_high[1] - a[..., 1]) / span[1] if self.action_dim > 1 else 0.5 + 0 * x
        return np.stack([x, y], axis=-1)

    def is_open(self, point: np.ndarray) -> bool:
        """False where ``point`` (view units) lies in a wall of a maze task (an env with a
        ``maze`` layout, Maze2D); True everywhere else."""
        maze = getattr(self.env.unwrapped, "maze", None)
        if maze is None or not hasattr(maze, "is_open"):
            return True
        return bool(maze.is_open(maze.cell_of(*self.clamp_point(point))))

    def wall_boxes(self) -> list[tuple[float, float, float, float]]:
        """A maze task's wall cells as boxes (x0, y0, x1, y1), view units; [] for other tasks."""
        maze = getattr(self.env.unwrapped, "maze", None)
        cells = getattr(maze, "cells", None)
        if cells is None:
            return []
        rows, cols = np.nonzero(~np.asarray(cells, bool))
        return [(float(c), float(r), c + 1.0, r + 1.0) for r, c in zip(rows, cols, strict=True)]

    def set_goal(self, point: np.ndarray) -> bool:
        """Move the env's goal to ``point`` with its ``set_goal`` method (which may return the new
        observation); False when the env has none (Maze2D draws its goal at reset and offers no
        setter)."""
        method = getattr(self.env.unwrapped, "set_goal", None)
        if not callable(method):
            return False
        obs = method(np.asarray(point, np.float64))
        if obs is not None:
            self.obs = obs
        return True

    def agent_point(self) -> np.ndarray:
        """Where the controlled agent is now, in view units (used as the initial target)."""
        unwrapped = self.env.unwrapped
        for name in ("agent_pos", "agent_position"):
            value = getattr(unwrapped, name, None)
            if value is not None:
                try:
                    return self.clamp_point(np.asarray(value, np.float64)[:2])
                except (TypeError, ValueError):
                    pass
        agent = getattr(unwrapped, "agent", None)
        position = getattr(agent, "position", None)
        if position is not None:
            return self.clamp_point(np.array([position[0], position[1]], np.float64))
        if self.draws_actions and isinstance(self.obs, np.ndarray) and self.obs.ndim == 1:
            return self.clamp_point(self.obs[:2])
        ex, ey = self.extent
        return np.array([ex / 2.0, ey / 2.0])
