"""PushT: push a T-shaped block onto a fixed target pose — the Diffusion Policy benchmark task.

Every number follows the reference implementation (``docs/pusht.md``): pymunk physics with a
kinematic round agent under PD control, 10 substeps of 0.01 s per step, reward
``clip(coverage / 0.95, 0, 1)``, termination when coverage > 0.95, 300 steps via the registration.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import pymunk
import shapely
from gymnasium import spaces

from ._checks import as_state_vector
from ._render import (
    LIGHT_GRAY,
    LIGHT_GREEN,
    LIGHT_SLATE_GRAY,
    ROYAL_BLUE,
    WHITE,
    Canvas,
    HumanWindow,
    RenderModes,
    fat_segment,
    import_pygame,
    lighten,
    resize_bilinear,
)

WORLD_SIZE = 512.0
GOAL_POSE = (256.0, 256.0, math.pi / 4)  # x, y, angle of the block's body origin
AGENT_RADIUS = 15.0
K_P, K_V = 100.0, 20.0  # PD gains of the agent's velocity control
DT = 0.01  # physics step (s)
SUBSTEPS = 10  # physics steps per env step: 100 Hz physics, 10 Hz control
SUCCESS_COVERAGE = 0.95
WALL_RADIUS = 2.0
CONTACT_RED = (231, 76, 60)  # pymunk's debug colour for contact points, in the observation
WALLS = (  # in the reference's order
    ((5.0, 506.0), (5.0, 5.0)),
    ((5.0, 5.0), (506.0, 5.0)),
    ((506.0, 5.0), (506.0, 506.0)),
    ((5.0, 506.0), (506.0, 506.0)),
)

# The T in body coordinates (scale 30, length 4), as the reference builds its two polygons.
_CROSSBAR_BUILD = ((-60.0, 30.0), (60.0, 30.0), (60.0, 0.0), (-60.0, 0.0))
_STEM_BUILD = ((-15.0, 30.0), (-15.0, 120.0), (15.0, 120.0), (15.0, 30.0))
OBS_TYPES = ("state", "keypoints", "pixels", "environment_state_agent_pos")

# The same corners in keypoint order (the reference's get_keypoints order):
#   0───────────1
#   3───4───5───2
#       │   │
#       7───6
T_KEYPOINTS_LOCAL = np.array(
    [
        [-60.0, 0.0],
        [60.0, 0.0],
        [60.0, 30.0],
        [-60.0, 30.0],  # crossbar
        [-15.0, 30.0],
        [15.0, 30.0],
        [15.0, 120.0],
        [-15.0, 120.0],  # stem
    ]
)
# Mean of the two polygons' centroids (0, 15) and (0, 75): the reference's centre of gravity.
BLOCK_COG = (0.0, 45.0)
T_AREA = 120.0 * 30.0 + 30.0 * 90.0  # 6300


def t_corners(x: float, y: float, angle: float) -> np.ndarray:
    """World coordinates (8, 2) of the T's corners (keypoint order) for body pose (x, y, angle)."""
    c, s = math.cos(angle), math.sin(angle)
    rot = np.array([[c, -s], [s, c]])
    return T_KEYPOINTS_LOCAL @ rot.T + np.array([x, y])


def _t_parts(corners: np.ndarray) -> np.ndarray:
    """The T as two shapely polygons (crossbar, stem) from its (8, 2) corners."""
    return shapely.polygons(corners.reshape(2, 4, 2))


_GOAL_PARTS = _t_parts(t_corners(*GOAL_POSE))


def coverage_of(x: float, y: float, angle: float) -> float:
    """area(T at pose ∩ T at goal) / area(T at goal), in [0, 1].

    The crossbar and the stem only share an edge, so the intersection area is the sum of the four
    part-by-part intersections.
    """
    parts = _t_parts(t_corners(x, y, angle))
    inter = shapely.intersection(parts[:, None], _GOAL_PARTS[None, :])
    return float(shapely.area(inter).sum() / T_AREA)


_STATE_NAMES = "[agent_x, agent_y, block_x, block_y, block_angle]"


@dataclass
class World:
    """The pymunk objects of one PushT episode."""

    space: pymunk.Space
    agent: pymunk.Body
    block: pymunk.Body
    block_shapes: tuple[pymunk.Poly, pymunk.Poly]


def build_world() -> World:
    """A fresh space with walls, agent at (256, 400) and block at (256, 300), as the reference does.

    Shape friction stays at pymunk's default (0): the reference sets ``friction`` on the bodies,
    where pymunk ignores it.
    """
    space = pymunk.Space()
    space.gravity = (0.0, 0.0)
    # Velocity is multiplied by damping**dt each step: 0 means the block keeps no momentum.
    space.damping = 0.0
    space.add(*[pymunk.Segment(space.static_body, a, b, WALL_RADIUS) for a, b in WALLS])

    agent = pymunk.Body(body_type=pymunk.Body.KINEMATIC)
    agent.position = (256.0, 400.0)
    space.add(agent, pymunk.Circle(agent, AGENT_RADIUS))

    # Reference quirk kept for parity: the moment counts the crossbar twice.
    moment = 2.0 * pymunk.moment_for_poly(1.0, _CROSSBAR_BUILD)
    block = pymunk.Body(1.0, moment)
    crossbar = pymunk.Poly(block, _CROSSBAR_BUILD)
    stem = pymunk.Poly(block, _STEM_BUILD)
    block.center_of_gravity = BLOCK_COG
    block.position = (256.0, 300.0)
    block.angle = 0.0
    space.add(block, crossbar, stem)
    return World(space, agent, block, (crossbar, stem))


def apply_reset_state(world: World, state: np.ndarray) -> None:
    """Reference reset order: agent position, block position, then angle (turns about the centre of
    gravity, moving the body origin), then one physics step. The start pose differs slightly from
    ``state``."""
    world.agent.position = (float(state[0]), float(state[1]))
    world.block.position = (float(state[2]), float(state[3]))
    world.block.angle = float(state[4])
    world.space.step(DT)


def step_agent(world: World, target: tuple[float, float], substeps: int = SUBSTEPS) -> None:
    """Run ``substeps`` physics steps driving the agent to ``target`` by PD velocity control."""
    tx, ty = target
    agent, space = world.agent, world.space
    for _ in range(substeps):
        px, py = agent.position
        vx, vy = agent.velocity
        # Same operation order as the reference: v += (k_p (target - p) + k_v (0 - v)) dt.
        ax = K_P * (tx - px) + K_V * (0.0 - vx)
        ay = K_P * (ty - py) + K_V * (0.0 - vy)
        agent.velocity = (vx + ax * DT, vy + ay * DT)
        space.step(DT)


class _ContactCounter:
    """Counts contact points after each solve. Not needed for the dynamics; it fills
    ``info["n_contacts"]``. pymunk 7 registers callbacks with ``space.on_collision``; 6.x with
    ``space.add_collision_handler(a, b).post_solve``."""

    def __init__(self, space: pymunk.Space) -> None:
        self.count = 0
        if hasattr(space, "on_collision"):  # pymunk >= 7
            space.on_collision(0, 0, post_solve=self._post_solve)
        else:  # pymunk 6.x
            space.add_collision_handler(0, 0).post_solve = self._post_solve

    def _post_solve(self, arbiter: pymunk.Arbiter, space: pymunk.Space, data: Any) -> None:
        self.count += len(arbiter.contact_point_set.points)


class PushT(RenderModes, gym.Env):
    """Push the grey T onto the green target T with a round agent.

    Actions: absolute target (x, y) for the agent in world pixels, Box [0, 512]^2 float32 (not
    clipped, as in the reference).

    Observations (``obs_type``):
      - ``"state"``: [agent_x, agent_y, block_x, block_y, block_angle mod 2π] float64; the block
        position is its body origin (middle of the crossbar's top edge), not its centre of gravity.
      - ``"keypoints"``: the T's 8 corners (x0, y0, ..., x7, y7; see ``T_KEYPOINTS_LOCAL``) and the
        agent position, (18,) float64.
      - ``"pixels"``: {"pixels": (96, 96, 3) uint8 image, "agent_pos": (2,) float64}.
      - ``"environment_state_agent_pos"``: the keypoints in the reference's Dict layout,
        {"environment_state": the 8 corners (16,), "agent_pos": (2,)} float64, as gym-pusht's
        obs type of that name: a policy trained on it acts in ``gym_pusht/PushT-v0`` unchanged.

    Reward ``clip(coverage / 0.95, 0, 1)``; terminated when coverage > 0.95. ``info``:
    ``is_success``, ``coverage``, ``block_pose`` [x, y, angle], ``goal_pose``, ``pos_agent``,
    ``vel_agent`` and ``n_contacts`` (contact points summed over the step's substeps).

    ``reset(options={"reset_to_state": [agent_x, agent_y, block_x, block_y, block_angle]})`` starts
    from a given state (applied in the reference's order, see ``apply_reset_state``).
    """

    metadata = {"render_modes": ["rgb_array", "human"], "render_fps": 10}
    obs_types = OBS_TYPES  # what ``obs_type=`` accepts (the app offers them)
    world_size = WORLD_SIZE

    def __init__(
        self,
        obs_type: str = "state",
        render_mode: str | None = None,
        render_size: int = 512,
        observation_size: int = 96,
    ) -> None:
        super().__init__()
        if obs_type not in OBS_TYPES:
            raise ValueError(f"PushT obs_type: expected one of {OBS_TYPES}, got {obs_type!r}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"PushT render_mode: expected None, 'rgb_array' or 'human', got {render_mode!r}"
            )
        self.obs_type = obs_type
        self.render_mode = render_mode
        self.render_size = int(render_size)
        self.observation_size = int(observation_size)
        self.goal_pose = np.array(GOAL_POSE, dtype=np.float64)
        self.action_space = spaces.Box(0.0, WORLD_SIZE, shape=(2,), dtype=np.float32)
        if obs_type == "state":
            self.observation_space = spaces.Box(
                low=np.zeros(5),
                high=np.array([WORLD_SIZE, WORLD_SIZE, WORLD_SIZE, WORLD_SIZE, 2 * math.pi]),
                dtype=np.float64,
            )
        elif obs_type == "keypoints":
            # a corner can stick out past a wall by up to its distance from the body origin
            # (the stem's tip: |(±15, 120)| ≈ 121); the agent position stays inside
            reach = math.hypot(15.0, 120.0)
            low = np.r_[np.full(16, -reach), 0.0, 0.0]
            high = np.r_[np.full(16, WORLD_SIZE + reach), WORLD_SIZE, WORLD_SIZE]
            self.observation_space = spaces.Box(low, high, dtype=np.float64)
        elif obs_type == "environment_state_agent_pos":
            reach = math.hypot(15.0, 120.0)  # as for "keypoints"
            self.observation_space = spaces.Dict(
                {
                    "environment_state": spaces.Box(-reach, WORLD_SIZE + reach, (16,), np.float64),
                    "agent_pos": spaces.Box(0.0, WORLD_SIZE, shape=(2,), dtype=np.float64),
                }
            )
        else:
            size = self.observation_size
            self.observation_space = spaces.Dict(
                {
                    "pixels": spaces.Box(0, 255, shape=(size, size, 3), dtype=np.uint8),
                    "agent_pos": spaces.Box(0.0, WORLD_SIZE, shape=(2,), dtype=np.float64),
                }
            )
        self._world: World | None = None
        self._contacts: _ContactCounter | None = None
        self._window: HumanWindow | None = None
        self._last_action: np.ndarray | None = None

    # ------------------------------------------------------------------ state access
    @property
    def world(self) -> World:
        if self._world is None:
            raise RuntimeError("PushT: call reset() before using the environment")
        return self._world

    @property
    def agent_position(self) -> np.ndarray:
        """Agent centre (2,) float64, world pixels."""
        return np.array(self.world.agent.position, dtype=np.float64)

    @property
    def block_pose(self) -> np.ndarray:
        """Block body origin and angle (not wrapped) [x, y, angle], float64."""
        b = self.world.block
        return np.array([b.position[0], b.position[1], b.angle], dtype=np.float64)

    def coverage(self) -> float:
        """Share of the goal T covered by the block, in [0, 1]."""
        return coverage_of(*self.block_pose)

    def keypoints(self) -> np.ndarray:
        """The block's 8 corners (8, 2) in world pixels, keypoint order."""
        return t_corners(*self.block_pose)

    # ------------------------------------------------------------------ gym API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        super().reset(seed=seed)
        state = None if options is None else options.get("reset_to_state")
        if state is not None:
            state = as_state_vector(state, 5, "PushT reset options['reset_to_state']", _STATE_NAMES)
        else:
            rng = self.np_random
            state = np.array(
                [
                    rng.integers(50, 450),
                    rng.integers(50, 450),
                    rng.integers(100, 400),
                    rng.integers(100, 400),
                    rng.uniform(-math.pi, math.pi),
                ],
                dtype=np.float64,
            )
        self._world = build_world()
        self._contacts = _ContactCounter(self._world.space)
        apply_reset_state(self._world, state)
        self._contacts.count = 0
        self._last_action = None
        coverage = self.coverage()
        info = self._info(coverage)
        if self.render_mode == "human":
            self.render()
        return self._obs(), info

    def reset_to_state(self, state: Any) -> tuple[Any, dict[str, Any]]:
        """Put the env exactly in ``state`` = [agent_x, agent_y, block_x, block_y, block_angle] (a
        state observation), agent at rest, for replaying or drawing stored states.

        Unlike ``reset(options={"reset_to_state": ...})``, which keeps the reference's order (the
        block turns about its centre of gravity after being placed, then one physics step), the
        observation afterwards equals ``state``. The random generator is left untouched.
        """
        state = as_state_vector(state, 5, "PushT.reset_to_state", _STATE_NAMES)
        self._world = build_world()
        self._contacts = _ContactCounter(self._world.space)
        self._world.agent.position = (float(state[0]), float(state[1]))
        self._world.block.angle = float(state[4])  # angle first: the position then stays exact
        self._world.block.position = (float(state[2]), float(state[3]))
        self._last_action = None
        return self._obs(), self._info(self.coverage())

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        target = np.asarray(action, dtype=np.float64).reshape(-1)
        if target.shape != (2,):
            raise ValueError(
                f"PushT action: expected an agent target (x, y), got shape {np.shape(action)}"
            )
        world = self.world
        self._contacts.count = 0
        self._last_action = target
        step_agent(world, (float(target[0]), float(target[1])))
        coverage = self.coverage()
        reward = float(np.clip(coverage / SUCCESS_COVERAGE, 0.0, 1.0))
        terminated = bool(coverage > SUCCESS_COVERAGE)
        info = self._info(coverage)
        if self.render_mode == "human":
            self.render()
        return self._obs(), reward, terminated, False, info

    def _info(self, coverage: float) -> dict[str, Any]:
        world = self.world
        return {
            "is_success": bool(coverage > SUCCESS_COVERAGE),
            "coverage": float(coverage),
            "block_pose": self.block_pose,
            "goal_pose": self.goal_pose.copy(),
            "pos_agent": self.agent_position,
            "vel_agent": np.array(world.agent.velocity, dtype=np.float64),
            "n_contacts": int(self._contacts.count) if self._contacts is not None else 0,
        }

    def _obs(self) -> Any:
        agent = self.agent_position
        if self.obs_type == "state":
            x, y, angle = self.block_pose
            return np.array([agent[0], agent[1], x, y, angle % (2 * math.pi)], dtype=np.float64)
        if self.obs_type == "keypoints":
            return np.concatenate([self.keypoints().reshape(-1), agent]).astype(np.float64)
        if self.obs_type == "environment_state_agent_pos":
            return {
                "environment_state": self.keypoints().reshape(-1).astype(np.float64),
                "agent_pos": agent.astype(np.float64),
            }
        return {"pixels": self.observation_image(), "agent_pos": agent}

    # ------------------------------------------------------------------ rendering
    def _contact_points(self) -> list[tuple[tuple[int, int], tuple[int, int]]]:
        """Both ends of every contact of the last physics step, rounded to pixels."""
        arbiters = {}
        for body in (self._world.agent, self._world.block):
            body.each_arbiter(lambda arb: arbiters.setdefault(frozenset(arb.shapes), arb))
        ends = []
        for arb in arbiters.values():
            cps = arb.contact_point_set
            n = np.array([cps.normal.x, cps.normal.y]) * 2.0  # drawn 2 px longer at each end
            for p in cps.points:
                a, b = (
                    np.array([p.point_a.x, p.point_a.y]) - n,
                    np.array([p.point_b.x, p.point_b.y]) + n,
                )
                ends.append(((round(a[0]), round(a[1])), (round(b[0]), round(b[1]))))
        return ends

    def observation_image(self) -> np.ndarray:
        """The ``pixels`` observation, (S, S, 3) uint8 with S = observation_size, drawn as the
        reference draws it (see ``envs._render``): so that an image policy trained here sees
        what it would see in gym-pusht, and images recorded there train here."""
        pygame = import_pygame()
        screen = pygame.Surface((int(WORLD_SIZE), int(WORLD_SIZE)))
        screen.fill(WHITE)
        for quad in np.split(t_corners(*self.goal_pose), 2):
            pygame.draw.polygon(screen, LIGHT_GREEN, [(round(x), round(y)) for x, y in quad])
        for a, b in WALLS:
            fat_segment(screen, a, b, WALL_RADIUS, LIGHT_GRAY)
        if self._world is not None:
            for quad in np.split(self.keypoints(), 2):  # the block, then the agent over it
                points = [(round(px), round(py)) for px, py in quad]
                pygame.draw.polygon(screen, lighten(LIGHT_SLATE_GRAY), points)
                for a, b in zip(quad, np.roll(quad, -1, axis=0), strict=True):
                    fat_segment(screen, a, b, 2.0, LIGHT_SLATE_GRAY)
            x, y = (round(v) for v in self.agent_position)
            pygame.draw.circle(screen, ROYAL_BLUE, (x, y), round(AGENT_RADIUS))
            pygame.draw.circle(screen, lighten(ROYAL_BLUE), (x, y), round(AGENT_RADIUS - 4))
            for a, b in self._contact_points():  # pymunk's debug drawing marks them too
                pygame.draw.aalines(screen, CONTACT_RED, False, [a, b])
        image = pygame.surfarray.array3d(screen).transpose(1, 0, 2)  # (512, 512, 3), rows = y
        return resize_bilinear(np.ascontiguousarray(image), self.observation_size)

    def render_frame(self, size: int = 512) -> np.ndarray:
        """The current state drawn on a (size, size, 3) uint8 RGB image (rows = y, no flip).

        Reference look: white background, goal T in LightGreen, block in LightSlateGray (lighter
        fill, outline 4 px), agent RoyalBlue (lighter inner disk), walls LightGray.
        """
        canvas = Canvas(size, WORLD_SIZE, WHITE)
        goal = t_corners(*self.goal_pose)
        canvas.polygon(goal[:4], LIGHT_GREEN)
        canvas.polygon(goal[4:], LIGHT_GREEN)
        for a, b in WALLS:
            canvas.polyline(np.array([a, b]), LIGHT_GRAY, 2 * WALL_RADIUS)
        if self._world is not None:
            corners = self.keypoints()
            fill = lighten(LIGHT_SLATE_GRAY)
            canvas.polygon(corners[:4], fill, LIGHT_SLATE_GRAY, 4.0)
            canvas.polygon(corners[4:], fill, LIGHT_SLATE_GRAY, 4.0)
            agent = self.agent_position
            canvas.circle(agent, AGENT_RADIUS, ROYAL_BLUE)
            canvas.circle(agent, AGENT_RADIUS - 4.0, lighten(ROYAL_BLUE))
        return canvas.to_array()
