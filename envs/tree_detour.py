"""TreeDetour: drive round the tree to the goal, by the left or by the right — a two-mode task.

The motivating example of Diffusion Policy: demonstrations go round an obstacle on either side with
equal probability, so a policy that averages them drives into it.
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from ._checks import as_state_vector
from ._point_mass import PointMassState
from ._render import ROYAL_BLUE, Canvas, HumanWindow, RenderModes, lighten

WORLD_SIZE = 512.0
AGENT_RADIUS = 15.0
K_P, K_V = 100.0, 20.0  # the PushT agent's PD gains
DT = 0.01
SUBSTEPS = 10  # 100 Hz physics, 10 Hz control
TREE_CENTER = (256.0, 256.0)
TREE_RADIUS = 60.0
GOAL_RADIUS = 28.0
# Start and goal centres are drawn uniformly in these boxes (symmetric about x = 256), so the
# straight line from start to goal always crosses the tree and both detours are equally long on
# average.
START_BOX = ((232.0, 438.0), (280.0, 462.0))  # (x_low, y_low), (x_high, y_high)
GOAL_BOX = ((232.0, 52.0), (280.0, 76.0))

GRASS = (226, 238, 214)
TREE_DARK = (22, 80, 36)
TREE = (34, 110, 50)
TREE_LIGHT = (58, 140, 70)
GOAL_FILL = (255, 228, 140)
GOAL_EDGE = (218, 165, 32)


OBS_TYPES = ("state", "pixels")


class TreeDetour(PointMassState, RenderModes, gym.Env):
    """A round agent starts near the bottom and must reach the goal disk near the top without
    touching the tree in the middle of the straight path.

    Actions: absolute target (x, y) for the agent in world pixels, Box [0, 512]^2 float32. The agent
    is the PushT agent: a kinematic disk of radius 15 under PD velocity control (k_p 100, k_v 20),
    10 substeps of 0.01 s per step.

    Observation (``obs_type="state"``): [agent_x, agent_y, goal_x, goal_y], float64, world
    pixels. The tree is fixed (centre ``TREE_CENTER``, radius ``TREE_RADIUS``), so it is not part
    of the observation. ``obs_type="pixels"``: {"pixels": the scene drawn at
    ``observation_size`` (96) pixels, uint8 (H, W, 3), "agent_pos": (2,) float64}.

    The episode ends (terminated) when the agent's centre is inside the goal disk (reward 1.0,
    ``is_success``) or when the agent touches the tree (reward 0.0, ``hit_tree``; checked at every
    substep); every other step gives 0.0. ``info``: ``is_success``, ``hit_tree``, ``side`` ("left"
    or "right": the agent's side of the tree when it first passed the tree's centre height; None
    before) and ``goal_distance`` (agent centre to goal centre, pixels).

    ``reset(options={"reset_to_state": [agent_x, agent_y, goal_x, goal_y]})`` starts from a given
    state with the agent at rest.
    """

    metadata = {"render_modes": ["rgb_array", "human"], "render_fps": 10}
    obs_types = OBS_TYPES  # what ``obs_type=`` accepts (the app offers them)
    world_size = WORLD_SIZE

    def __init__(
        self,
        render_mode: str | None = None,
        render_size: int = 512,
        obs_type: str = "state",
        observation_size: int = 96,
    ) -> None:
        super().__init__()
        if obs_type not in OBS_TYPES:
            raise ValueError(f"TreeDetour obs_type: expected one of {OBS_TYPES}, got {obs_type!r}")
        self.obs_type = obs_type
        self.observation_size = int(observation_size)
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                "TreeDetour render_mode: expected None, 'rgb_array' or 'human', "
                f"got {render_mode!r}"
            )
        self.render_mode = render_mode
        self.render_size = int(render_size)
        self.tree_center = np.array(TREE_CENTER)
        self.tree_radius = TREE_RADIUS
        self.goal_radius = GOAL_RADIUS
        self.agent_radius = AGENT_RADIUS
        self.action_space = spaces.Box(0.0, WORLD_SIZE, shape=(2,), dtype=np.float32)
        state = spaces.Box(0.0, WORLD_SIZE, shape=(4,), dtype=np.float64)
        if obs_type == "pixels":  # the goal is in the picture; the agent's position is given too
            side = self.observation_size
            self.observation_space = spaces.Dict(
                {
                    "pixels": spaces.Box(0, 255, shape=(side, side, 3), dtype=np.uint8),
                    "agent_pos": spaces.Box(0.0, WORLD_SIZE, shape=(2,), dtype=np.float64),
                }
            )
        else:
            self.observation_space = state
        self._pos: list[float] | None = None
        self._vel = [0.0, 0.0]
        self._goal = [0.0, 0.0]
        self._side: str | None = None
        self._hit = False
        self._window: HumanWindow | None = None

    # ------------------------------------------------------------------ gym API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        state = None if options is None else options.get("reset_to_state")
        if state is not None:
            state = as_state_vector(
                state,
                4,
                "TreeDetour reset options['reset_to_state']",
                "[agent_x, agent_y, goal_x, goal_y]",
            )
        else:
            start = self.np_random.uniform(*START_BOX)
            goal = self.np_random.uniform(*GOAL_BOX)
            state = np.concatenate([start, goal])
        self._pos = [float(state[0]), float(state[1])]
        self._vel = [0.0, 0.0]
        self._goal = [float(state[2]), float(state[3])]
        self._side = None
        self._hit = self._touches_tree()
        if self.render_mode == "human":
            self.render()
        return self._obs(), self._info(success=False)

    def reset_to_state(self, state: Any) -> tuple[np.ndarray, dict[str, Any]]:
        """Put the env in ``state`` = [agent_x, agent_y, goal_x, goal_y] (an observation), agent at
        rest, for replaying or drawing stored states; the random generator is left untouched."""
        return self.reset(options={"reset_to_state": state})

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        target = np.asarray(action, dtype=np.float64).reshape(-1)
        if target.shape != (2,):
            raise ValueError(
                f"TreeDetour action: expected an agent target (x, y), got shape {np.shape(action)}"
            )
        if self._pos is None:
            raise RuntimeError("TreeDetour: call reset() before step()")
        tx, ty = float(target[0]), float(target[1])
        px, py = self._pos
        vx, vy = self._vel
        tree_y = TREE_CENTER[1]
        for _ in range(SUBSTEPS):
            # Exactly what pymunk does for a kinematic body under the PushT controller.
            vx += (K_P * (tx - px) + K_V * (0.0 - vx)) * DT
            vy += (K_P * (ty - py) + K_V * (0.0 - vy)) * DT
            prev_y = py
            px += vx * DT
            py += vy * DT
            if self._side is None and prev_y >= tree_y > py:
                self._side = "left" if px < TREE_CENTER[0] else "right"
            self._pos = [px, py]
            if self._touches_tree():
                self._hit = True
                break
        self._vel = [vx, vy]
        success = not self._hit and self._goal_distance() <= GOAL_RADIUS
        terminated = bool(self._hit or success)
        if self.render_mode == "human":
            self.render()
        return self._obs(), 1.0 if success else 0.0, terminated, False, self._info(success)

    def _touches_tree(self) -> bool:
        px, py = self._pos
        return math.hypot(px - TREE_CENTER[0], py - TREE_CENTER[1]) < TREE_RADIUS + AGENT_RADIUS

    def _goal_distance(self) -> float:
        return math.hypot(self._pos[0] - self._goal[0], self._pos[1] - self._goal[1])

    def _obs(self) -> np.ndarray | dict[str, np.ndarray]:
        if self.obs_type == "pixels":
            return {
                "pixels": self.render_frame(self.observation_size),
                "agent_pos": np.array(self._pos, dtype=np.float64),
            }
        return np.array([*self._pos, *self._goal], dtype=np.float64)

    def _info(self, success: bool) -> dict[str, Any]:
        return {
            "is_success": bool(success),
            "hit_tree": bool(self._hit),
            "side": self._side,
            "goal_distance": float(self._goal_distance()),
        }

    # ------------------------------------------------------------------ rendering
    def render_frame(self, size: int = 512) -> np.ndarray:
        """The current state on a (size, size, 3) uint8 RGB image (rows = y, no flip): grass, the
        goal disk (gold), the tree (dark green, seen from above) and the agent (RoyalBlue)."""
        canvas = Canvas(size, WORLD_SIZE, GRASS)
        if self._pos is not None:
            canvas.circle(self._goal, GOAL_RADIUS, GOAL_FILL)
            canvas.ring(self._goal, GOAL_RADIUS, GOAL_EDGE, 3.0)
        cx, cy = TREE_CENTER
        canvas.circle(TREE_CENTER, TREE_RADIUS, TREE_DARK)
        canvas.circle(TREE_CENTER, TREE_RADIUS - 5.0, TREE)
        for dx, dy, r in ((-18, -16, 22), (20, -8, 18), (-4, 20, 20), (24, 24, 12), (-28, 14, 10)):
            canvas.circle((cx + dx, cy + dy), r, TREE_LIGHT)
        if self._pos is not None:
            canvas.circle(self._pos, AGENT_RADIUS, ROYAL_BLUE)
            canvas.circle(self._pos, AGENT_RADIUS - 4.0, lighten(ROYAL_BLUE))
        return canvas.to_array()
