"""Maze2D: a goal-conditioned point mass in the D4RL maze2d layouts (umaze, medium, large).

The layouts are D4RL's ``maze2d`` mazes; the physics is a small deterministic NumPy/Python point
mass (no MuJoCo): force actions, damping, a speed limit, and walls that stop the motion into them
and let the point slide along them. Observations are laid out as gymnasium-robotics' PointMaze
does (``observation``, ``achieved_goal``, ``desired_goal``).

World coordinates: 1 cell = 1.0; cell (row r, column c) covers x in [c, c + 1], y in [r, r + 1]
(x right, y down, as rows are drawn on the image); its centre is (c + 0.5, r + 0.5).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from ._checks import as_state_vector
from ._point_mass import PointMassState
from ._render import ROYAL_BLUE, Canvas, HumanWindow, RenderModes, lighten

# ---------------------------------------------------------------------------------------- layouts
# The three maze2d layouts of D4RL (d4rl/pointmaze/maze_model.py: U_MAZE, MEDIUM_MAZE and
# LARGE_MAZE, the training layouts, not the *_EVAL ones), one string per row, rows top to bottom:
# "#" wall, "O" open. D4RL marks its fixed goal cell "G"; it is an open cell here too (this task
# draws a goal per episode) and is kept only so the rows can be compared with D4RL's.
LAYOUTS: dict[str, tuple[str, ...]] = {
    "umaze": (  # 5 x 5: a U open to the left, walls all round
        "#####",
        "#GOO#",
        "###O#",
        "#OOO#",
        "#####",
    ),
    "medium": (  # 8 x 8
        "########",
        "#OO##OO#",
        "#OO#OOO#",
        "##OOO###",
        "#OO#OOO#",
        "#O#OO#O#",
        "#OOO#OG#",
        "########",
    ),
    "large": (  # 9 rows x 12 columns
        "############",
        "#OOOO#OOOOO#",
        "#O##O#O#O#O#",
        "#OOOOOO#OOO#",
        "#O####O###O#",
        "#OO#O#OOOOO#",
        "##O#O#O#O###",
        "#OO#OOO#OGO#",
        "############",
    ),
}

Cell = tuple[int, int]

# ---------------------------------------------------------------------------------------- physics
DT = 0.1  # seconds per step (10 Hz control)
SUBSTEPS = 10  # 100 Hz physics
ACCEL = 10.0  # cells/s^2 per unit of force
DAMPING = 2.0  # 1/s: dv/dt = ACCEL * a - DAMPING * v
MAX_SPEED = 3.0  # cells/s; the velocity is scaled back to this length when faster
AGENT_RADIUS = 0.1  # cells: the point collides as a square of this half-size (and is drawn so)
GOAL_RADIUS = 0.5  # success: the agent's centre within this distance of the goal
JITTER = 0.2  # start and goal are drawn uniformly within +-JITTER of their cell centres
_EPS = 1e-9

FLOOR = (236, 232, 220)
WALL = (178, 128, 77)  # D4RL's wall material (.7 .5 .3)
WALL_EDGE = (140, 98, 56)
OUTSIDE = (60, 60, 66)  # the square canvas beyond a non-square maze
GOAL_FILL = (255, 205, 205)
GOAL_EDGE = (200, 60, 60)


class MazeLayout:
    """A maze as a grid of open and wall cells, with the cell geometry and BFS a planner needs.

    ``MazeLayout.named("medium")`` or ``MazeLayout(rows)`` with rows of "#" (wall) and "O"/"G"
    (open). Cells are (row, column) tuples; 4-connected moves between open cells.
    """

    def __init__(self, rows: Sequence[str], name: str | None = None) -> None:
        rows = tuple(rows)
        if not rows or len({len(r) for r in rows}) != 1:
            raise ValueError("MazeLayout: expected equally long, non-empty rows")
        bad = {ch for r in rows for ch in r} - set("#OG")
        if bad:
            raise ValueError(f"MazeLayout: unknown cell characters {sorted(bad)}; use '#' or 'O'")
        self.name = name
        self.rows = rows
        self.n_rows, self.n_cols = len(rows), len(rows[0])
        cells = np.array([[ch != "#" for ch in r] for r in rows], dtype=bool)
        cells.flags.writeable = False
        self.cells = cells  # (n_rows, n_cols) bool, True = open
        self._open = [(int(r), int(c)) for r, c in zip(*np.nonzero(cells), strict=True)]

    @classmethod
    def named(cls, name: str) -> MazeLayout:
        if name not in LAYOUTS:
            raise ValueError(f"maze: expected one of {sorted(LAYOUTS)}, got {name!r}")
        return cls(LAYOUTS[name], name)

    @property
    def size(self) -> tuple[float, float]:
        """World extent (width, height) = (columns, rows)."""
        return float(self.n_cols), float(self.n_rows)

    def open_cells(self) -> list[Cell]:
        """Every open cell, row by row."""
        return list(self._open)

    def is_open(self, cell: Sequence[int]) -> bool:
        r, c = int(cell[0]), int(cell[1])
        return 0 <= r < self.n_rows and 0 <= c < self.n_cols and bool(self.cells[r, c])

    def cell_center(self, r: int, c: int) -> np.ndarray:
        """World (x, y) of the centre of cell (r, c)."""
        return np.array([c + 0.5, r + 0.5], dtype=np.float64)

    def cell_of(self, x: float, y: float) -> Cell:
        """The (row, column) cell containing world point (x, y)."""
        return int(math.floor(y)), int(math.floor(x))

    def neighbours(self, cell: Cell) -> list[Cell]:
        r, c = cell
        around = ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1))
        return [n for n in around if self.is_open(n)]

    def _check_cell(self, cell: Any, what: str) -> Cell:
        try:
            r, c = (int(v) for v in cell)
        except (TypeError, ValueError):
            raise ValueError(f"{what}: expected a (row, column) cell, got {cell!r}") from None
        if not self.is_open((r, c)):
            raise ValueError(f"{what}: {(r, c)} is not an open cell of the {self.name} maze")
        return r, c

    def distances(self, goal_cell: Cell) -> dict[Cell, int]:
        """BFS: steps from every reachable open cell to ``goal_cell``."""
        goal = self._check_cell(goal_cell, "goal_cell")
        dist = {goal: 0}
        queue = deque([goal])
        while queue:
            cell = queue.popleft()
            for n in self.neighbours(cell):
                if n not in dist:
                    dist[n] = dist[cell] + 1
                    queue.append(n)
        return dist

    def _path_counts(self, goal: Cell) -> tuple[dict[Cell, int], dict[Cell, int]]:
        """Distances to ``goal`` and, for each cell, its number of shortest paths to ``goal``."""
        dist = self.distances(goal)
        counts: dict[Cell, int] = {}
        for cell in sorted(dist, key=dist.get):
            if dist[cell] == 0:
                counts[cell] = 1
            else:
                counts[cell] = sum(
                    counts[n] for n in self.neighbours(cell) if dist.get(n) == dist[cell] - 1
                )
        return dist, counts

    def shortest_path(self, start_cell: Any, goal_cell: Any) -> list[Cell] | None:
        """A shortest 4-connected path of cells from ``start_cell`` to ``goal_cell`` (both
        included; when there are several, the one that prefers moving up, down, left, right in that
        order), or None if unreachable."""
        start = self._check_cell(start_cell, "start_cell")
        dist = self.distances(goal_cell)
        if start not in dist:
            return None
        path = [start]
        while dist[path[-1]] > 0:
            path.append(
                next(n for n in self.neighbours(path[-1]) if dist.get(n) == dist[path[-1]] - 1)
            )
        return path

    def count_shortest_paths(self, start_cell: Any, goal_cell: Any) -> int:
        """How many distinct shortest 4-connected paths join the two cells (0 if unreachable)."""
        start = self._check_cell(start_cell, "start_cell")
        _, counts = self._path_counts(self._check_cell(goal_cell, "goal_cell"))
        return counts.get(start, 0)

    def sample_shortest_path(
        self, start_cell: Any, goal_cell: Any, rng: np.random.Generator
    ) -> list[Cell] | None:
        """One of the shortest paths, drawn uniformly among all of them with ``rng``."""
        start = self._check_cell(start_cell, "start_cell")
        dist, counts = self._path_counts(self._check_cell(goal_cell, "goal_cell"))
        if start not in dist:
            return None
        path = [start]
        while dist[path[-1]] > 0:
            here = path[-1]
            nexts = [n for n in self.neighbours(here) if dist.get(n) == dist[here] - 1]
            weights = np.array([counts[n] for n in nexts], dtype=np.float64)
            path.append(nexts[int(rng.choice(len(nexts), p=weights / weights.sum()))])
        return path

    def box_is_free(self, x: float, y: float, half: float = AGENT_RADIUS) -> bool:
        """Whether the square of half-size ``half`` centred on (x, y) overlaps no wall cell."""
        r0, r1 = math.floor(y - half + _EPS), math.floor(y + half - _EPS)
        c0, c1 = math.floor(x - half + _EPS), math.floor(x + half - _EPS)
        return all(self.is_open((r, c)) for r in range(r0, r1 + 1) for c in range(c0, c1 + 1))


class Maze2D(PointMassState, RenderModes, gym.Env):
    """Drive a point mass to a goal in a D4RL maze2d layout (``maze`` = "umaze", "medium" or
    "large").

    Actions: force (fx, fy) in [-1, 1]^2, Box float32 (clipped). Each step is ``DT`` = 0.1 s in
    ``SUBSTEPS`` = 10 Euler substeps of dv/dt = ACCEL * a - DAMPING * v (ACCEL 10 cells/s^2,
    DAMPING 2 /s), the velocity scaled back to ``MAX_SPEED`` = 3 cells/s, then the position moved
    one axis at a time against the wall cells: the point collides as a square of half-size
    ``AGENT_RADIUS`` = 0.1, stops at a wall it moves into (that velocity component becomes 0) and
    slides along it. Every crossed cell is checked, so nothing tunnels through a wall.

    Observation (``spaces.Dict``, float64): ``observation`` = (x, y, vx, vy), ``achieved_goal`` =
    (x, y), ``desired_goal`` = (gx, gy); world units (one cell = 1.0, see the module docstring).

    ``reset`` draws distinct open start and goal cells from ``np_random`` and places both uniformly
    within +-``JITTER`` (0.2) of their cell centres, agent at rest. ``options``: ``start_cell`` /
    ``goal_cell`` = (row, column) fix the cells (still jittered); ``reset_pos`` / ``goal_pos`` =
    (x, y) fix the exact positions (they win over the cells).

    Reward 1.0 and terminated when the agent's centre is within ``GOAL_RADIUS`` = 0.5 of the goal
    (``info["is_success"]``), else 0.0. ``info``: ``is_success``, ``distance`` (agent to goal).
    The step limit comes from the registration (see ``dp_agent.envs.register_envs``).

    Planner helpers (also on ``self.maze``, a :class:`MazeLayout`): ``cells``, ``open_cells()``,
    ``cell_center(r, c)``, ``cell_of(x, y)``, ``shortest_path(start, goal)``,
    ``count_shortest_paths(start, goal)``. ``world_size`` is max(rows, columns): frames are
    square, the maze in their top-left corner, and world (x, y) maps to pixel
    (x, y) * size / world_size (``world_to_pixel``).
    """

    metadata = {"render_modes": ["rgb_array", "human"], "render_fps": 10}

    def __init__(
        self, maze: str = "umaze", render_mode: str | None = None, render_size: int = 512
    ) -> None:
        super().__init__()
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"Maze2D render_mode: expected None, 'rgb_array' or 'human', got {render_mode!r}"
            )
        self.maze = MazeLayout.named(maze)
        self.maze_name = maze
        self.render_mode = render_mode
        self.render_size = int(render_size)
        self.world_size = float(max(self.maze.n_rows, self.maze.n_cols))
        self.agent_radius = AGENT_RADIUS
        self.goal_radius = GOAL_RADIUS
        width, height = self.maze.size
        self.action_space = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        position = spaces.Box(np.zeros(2), np.array([width, height]), shape=(2,), dtype=np.float64)
        self.observation_space = spaces.Dict(
            {
                "observation": spaces.Box(
                    np.array([0.0, 0.0, -MAX_SPEED, -MAX_SPEED]),
                    np.array([width, height, MAX_SPEED, MAX_SPEED]),
                    shape=(4,),
                    dtype=np.float64,
                ),
                "achieved_goal": position,
                "desired_goal": position,
            }
        )
        self._pos: list[float] | None = None
        self._vel = [0.0, 0.0]
        self._goal = [0.0, 0.0]
        self._window: HumanWindow | None = None

    # ------------------------------------------------------------------ planner helpers
    @property
    def cells(self) -> np.ndarray:
        """(rows, columns) bool, True = open."""
        return self.maze.cells

    def open_cells(self) -> list[Cell]:
        return self.maze.open_cells()

    def cell_center(self, r: int, c: int) -> np.ndarray:
        return self.maze.cell_center(r, c)

    def cell_of(self, x: float, y: float) -> Cell:
        return self.maze.cell_of(x, y)

    def shortest_path(self, start_cell: Any, goal_cell: Any) -> list[Cell] | None:
        return self.maze.shortest_path(start_cell, goal_cell)

    def count_shortest_paths(self, start_cell: Any, goal_cell: Any) -> int:
        return self.maze.count_shortest_paths(start_cell, goal_cell)

    def world_to_pixel(self, points: Any, size: int | None = None) -> np.ndarray:
        """World points (..., 2) -> pixel coordinates (x, y) on a ``size`` frame (default
        ``render_size``)."""
        size = self.render_size if size is None else int(size)
        return np.asarray(points, dtype=np.float64) * (size / self.world_size)

    def force_toward(self, point: Any) -> np.ndarray:
        """The force (2,) in [-1, 1] that steers the agent to ``point`` (a PD law on position and
        velocity): what a mouse or gamepad target means in this force-controlled task."""
        error = np.asarray(point, dtype=np.float64) - self.agent_position
        force = (6.0 * error - 2.5 * self.agent_velocity) / ACCEL * DAMPING
        return np.clip(force, -1.0, 1.0).astype(np.float32)

    # ------------------------------------------------------------------ gym API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        super().reset(seed=seed)
        options = options or {}
        maze, rng = self.maze, self.np_random
        free = maze.open_cells()
        start_cell = options.get("start_cell")
        goal_cell = options.get("goal_cell")
        if start_cell is not None:
            start_cell = maze._check_cell(start_cell, "Maze2D reset options['start_cell']")
        if goal_cell is not None:
            goal_cell = maze._check_cell(goal_cell, "Maze2D reset options['goal_cell']")
        if start_cell is None:
            choices = [c for c in free if c != goal_cell]
            start_cell = choices[int(rng.integers(len(choices)))]
        if goal_cell is None:
            choices = [c for c in free if c != start_cell]
            goal_cell = choices[int(rng.integers(len(choices)))]

        if options.get("reset_pos") is not None:
            start = as_state_vector(
                options["reset_pos"], 2, "Maze2D reset options['reset_pos']", "(x, y)"
            )
            if not maze.box_is_free(*start):
                raise ValueError(
                    f"Maze2D reset options['reset_pos']: {tuple(start)} puts the agent in a wall"
                )
        else:
            start = maze.cell_center(*start_cell) + rng.uniform(-JITTER, JITTER, size=2)
        if options.get("goal_pos") is not None:
            goal = as_state_vector(
                options["goal_pos"], 2, "Maze2D reset options['goal_pos']", "(x, y)"
            )
            if not maze.is_open(maze.cell_of(*goal)):
                raise ValueError(f"Maze2D reset options['goal_pos']: {tuple(goal)} is in a wall")
        else:
            goal = maze.cell_center(*goal_cell) + rng.uniform(-JITTER, JITTER, size=2)

        self._pos = [float(start[0]), float(start[1])]
        self._vel = [0.0, 0.0]
        self._goal = [float(goal[0]), float(goal[1])]
        if self.render_mode == "human":
            self.render()
        return self._obs(), self._info()

    def step(self, action: Any) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        force = np.asarray(action, dtype=np.float64).reshape(-1)
        if force.shape != (2,) or not np.all(np.isfinite(force)):
            raise ValueError(f"Maze2D action: expected 2 finite numbers (fx, fy), got {action!r}")
        if self._pos is None:
            raise RuntimeError("Maze2D: call reset() before step()")
        fx, fy = (float(v) for v in np.clip(force, -1.0, 1.0))
        px, py = self._pos
        vx, vy = self._vel
        h = DT / SUBSTEPS
        for _ in range(SUBSTEPS):
            vx += (ACCEL * fx - DAMPING * vx) * h
            vy += (ACCEL * fy - DAMPING * vy) * h
            speed = math.hypot(vx, vy)
            if speed > MAX_SPEED:
                vx, vy = vx * MAX_SPEED / speed, vy * MAX_SPEED / speed
                vx = min(max(vx, -MAX_SPEED), MAX_SPEED)
                vy = min(max(vy, -MAX_SPEED), MAX_SPEED)
            px, blocked = self._move(px, py, vx * h, axis=0)
            if blocked:
                vx = 0.0
            py, blocked = self._move(py, px, vy * h, axis=1)
            if blocked:
                vy = 0.0
        self._pos = [px, py]
        self._vel = [vx, vy]
        info = self._info()
        success = info["is_success"]
        if self.render_mode == "human":
            self.render()
        return self._obs(), 1.0 if success else 0.0, bool(success), False, info

    def _move(self, along: float, across: float, delta: float, axis: int) -> tuple[float, bool]:
        """Move the agent's square by ``delta`` along ``axis`` (0: x, 1: y; ``across`` is the other
        coordinate), stopping at the first wall cell its leading edge would enter. Returns the new
        coordinate and whether a wall stopped it."""
        if delta == 0.0:
            return along, False
        half = AGENT_RADIUS
        lo = math.floor(across - half + _EPS)
        hi = math.floor(across + half - _EPS)
        cells = self.maze.cells
        n_rows, n_cols = cells.shape

        def wall(k: int) -> bool:  # line k (a column when axis 0, a row when axis 1) is blocked
            for j in range(lo, hi + 1):
                r, c = (j, k) if axis == 0 else (k, j)
                if not (0 <= r < n_rows and 0 <= c < n_cols) or not cells[r, c]:
                    return True
            return False

        if delta > 0:
            lead = along + half
            for k in range(math.floor(lead - _EPS) + 1, math.floor(lead + delta - _EPS) + 1):
                if wall(k):
                    return k - half, True
        else:
            lead = along - half
            for k in range(math.floor(lead + _EPS) - 1, math.floor(lead + delta + _EPS) - 1, -1):
                if wall(k):
                    return k + 1 + half, True
        return along + delta, False

    def _distance(self) -> float:
        return math.hypot(self._pos[0] - self._goal[0], self._pos[1] - self._goal[1])

    def _obs(self) -> dict[str, np.ndarray]:
        return {
            "achieved_goal": np.array(self._pos, dtype=np.float64),
            "desired_goal": np.array(self._goal, dtype=np.float64),
            "observation": np.array([*self._pos, *self._vel], dtype=np.float64),
        }

    def _info(self) -> dict[str, Any]:
        distance = self._distance()
        return {"is_success": bool(distance <= GOAL_RADIUS), "distance": float(distance)}

    # ------------------------------------------------------------------ rendering
    def render_frame(self, size: int = 512) -> np.ndarray:
        """The current state on a (size, size, 3) uint8 RGB image (rows = y, no flip): floor and
        walls (D4RL's brown), the goal's success disk (red rim) and the agent (RoyalBlue)."""
        canvas = Canvas(size, self.world_size, OUTSIDE)
        unit = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
        for r in range(self.maze.n_rows):
            for c in range(self.maze.n_cols):
                square = unit + (c, r)
                if self.maze.cells[r, c]:
                    canvas.polygon(square, FLOOR)
                else:
                    canvas.polygon(square, WALL)
        edge = 0.03
        for r in range(self.maze.n_rows):
            for c in range(self.maze.n_cols):
                if not self.maze.cells[r, c]:
                    canvas.polyline(
                        unit * (1 - 2 * edge) + (c + edge, r + edge), WALL_EDGE, edge, True
                    )
        if self._pos is not None:
            canvas.circle(self._goal, GOAL_RADIUS, GOAL_FILL)
            canvas.ring(self._goal, GOAL_RADIUS, GOAL_EDGE, 0.04)
            canvas.cross(self._goal, 0.08, GOAL_EDGE, 0.03)
            canvas.circle(self._pos, AGENT_RADIUS, ROYAL_BLUE)
            canvas.circle(self._pos, AGENT_RADIUS * 0.6, lighten(ROYAL_BLUE))
        return canvas.to_array()
