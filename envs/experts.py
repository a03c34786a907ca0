"""Scripted experts that generate demonstrations for the 2D tasks.

``make_expert(env)`` returns the expert for a PushT, TreeDetour or Maze2D env; call
``expert.reset(seed)`` after each ``env.reset`` and ``expert.act(obs)`` for each step's action: an
absolute (x, y) target (PushT, TreeDetour) or a force in [-1, 1]^2 (Maze2D).
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from . import maze2d
from .maze2d import Maze2D
from .pusht import AGENT_RADIUS, GOAL_POSE, T_KEYPOINTS_LOCAL, PushT, World, build_world
from .pusht import step_agent as _sim_step
from .tree_detour import TreeDetour

# No target further than this from the agent (pixels): learnable, human-like motions.
MAX_LEAD = 60.0


class Expert(Protocol):
    def reset(self, seed: int | None = None) -> None: ...

    def act(self, obs: Any) -> np.ndarray: ...


_EXPERT_STREAM = 0x7EE  # second word of the TreeDetour expert's seed sequence
_MAZE_EXPERT_STREAM = 0x3A2E  # second word of the Maze2D expert's seed sequence


def make_expert(env: Any) -> Expert:
    """The scripted expert for ``env`` (a ``gym.make``'d PushT, TreeDetour or Maze2D, wrappers
    allowed)."""
    base = getattr(env, "unwrapped", env)
    if isinstance(base, PushT):
        return PushTExpert(base)
    if isinstance(base, TreeDetour):
        return TreeDetourExpert(base)
    if isinstance(base, Maze2D):
        return MazeExpert(base)
    raise TypeError(
        "make_expert: expected a dp_agent PushT or TreeDetour environment (or Maze2D), "
        f"got {type(base).__name__}"
    )


def _limit(agent: np.ndarray, target: np.ndarray, max_dist: float = MAX_LEAD) -> np.ndarray:
    """``target`` pulled toward ``agent`` to at most ``max_dist`` away, clipped to the world."""
    d = target - agent
    n = float(np.hypot(d[0], d[1]))
    if n > max_dist:
        target = agent + d * (max_dist / n)
    return np.clip(target, 0.0, 512.0)


def _rot(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s], [s, c]])


# ======================================================================================= PushT
# Candidate pushes in the block's frame: (contact point on the T's outline, outward normal there).
def _push_candidates() -> list[tuple[np.ndarray, np.ndarray]]:
    c: list[tuple[tuple[float, float], tuple[float, float]]] = []
    c += [((x, 0.0), (0.0, -1.0)) for x in (-52.0, -35.0, -18.0, 0.0, 18.0, 35.0, 52.0)]  # top
    for s in (-1.0, 1.0):
        c += [((s * 60.0, y), (s, 0.0)) for y in (8.0, 22.0)]  # crossbar ends
        c += [((s * x, 30.0), (0.0, 1.0)) for x in (42.0, 52.0)]  # crossbar underside
        c += [((s * 15.0, y), (s, 0.0)) for y in (58.0, 78.0, 98.0, 114.0)]  # stem sides
    c += [((x, 120.0), (0.0, 1.0)) for x in (-9.0, 0.0, 9.0)]  # stem end
    return [(np.array(p), np.array(n)) for p, n in c]


PUSH_CANDIDATES = _push_candidates()
_GOAL_CORNERS = T_KEYPOINTS_LOCAL @ _rot(GOAL_POSE[2]).T + np.array(GOAL_POSE[:2])

CLEARANCE = 6.0  # gap kept between the agent's edge and the block while travelling
INFLATE = AGENT_RADIUS + CLEARANCE
# The T inflated by the agent radius plus clearance: two axis-aligned boxes in the block frame.
_OBSTACLES = (
    (-60.0 - INFLATE, -INFLATE, 60.0 + INFLATE, 30.0 + INFLATE),
    (-15.0 - INFLATE, 30.0, 15.0 + INFLATE, 120.0 + INFLATE),
)
_E = INFLATE + 2.0
# Waypoints around the inflated T (its corners, a little further out), block frame.
_CORNER_NODES = np.array(
    [
        [-60.0 - _E, -_E],
        [60.0 + _E, -_E],
        [60.0 + _E, 30.0 + _E],
        [15.0 + _E, 30.0 + _E],
        [15.0 + _E, 120.0 + _E],
        [-15.0 - _E, 120.0 + _E],
        [-15.0 - _E, 30.0 + _E],
        [-60.0 - _E, 30.0 + _E],
    ]
)


def pose_error(x: float, y: float, angle: float) -> float:
    """Root mean square distance (pixels) between the block's corners and the goal's."""
    corners = T_KEYPOINTS_LOCAL @ _rot(angle).T + np.array([x, y])
    return float(np.sqrt(np.mean(np.sum((corners - _GOAL_CORNERS) ** 2, axis=1))))


def _inside(p: np.ndarray, box: tuple[float, float, float, float]) -> bool:
    return box[0] < p[0] < box[2] and box[1] < p[1] < box[3]


def _segment_hits_box(a: np.ndarray, b: np.ndarray, box: tuple[float, float, float, float]) -> bool:
    """Whether segment a-b passes through the open box (Liang–Barsky clipping)."""
    t0, t1 = 0.0, 1.0
    d = b - a
    for i, (lo, hi) in enumerate(((box[0], box[2]), (box[1], box[3]))):
        if abs(d[i]) < 1e-12:
            if not lo < a[i] < hi:
                return False
            continue
        u0, u1 = (lo - a[i]) / d[i], (hi - a[i]) / d[i]
        if u0 > u1:
            u0, u1 = u1, u0
        t0, t1 = max(t0, u0), min(t1, u1)
        if t1 - t0 <= 1e-9:
            return False
    return True


def _clear(a: np.ndarray, b: np.ndarray) -> bool:
    return not any(_segment_hits_box(a, b, box) for box in _OBSTACLES)


def _escape(p: np.ndarray) -> np.ndarray | None:
    """The nearest point just outside the inflated T along an axis, if ``p`` is inside it."""
    if not any(_inside(p, box) for box in _OBSTACLES):
        return None
    best, best_d = None, math.inf
    for box in _OBSTACLES:
        for q in (
            (box[0] - 0.5, p[1]),
            (box[2] + 0.5, p[1]),
            (p[0], box[1] - 0.5),
            (p[0], box[3] + 0.5),
        ):
            q = np.array(q)
            d = float(np.hypot(*(q - p)))
            if d < best_d and not any(_inside(q, b) for b in _OBSTACLES):
                best, best_d = q, d
    return best


def plan_path(start: np.ndarray, goal: np.ndarray, pose: np.ndarray) -> list[np.ndarray] | None:
    """Shortest polyline (world coordinates) from ``start`` to ``goal`` round the block at ``pose``,
    keeping ``CLEARANCE`` between agent and block; None if there is none inside the world."""
    rot = _rot(pose[2])
    origin = pose[:2]
    to_body = lambda p: (p - origin) @ rot  # noqa: E731  (R^T (p - origin))
    s, g = to_body(start), to_body(goal)
    prefix = [s]
    esc = _escape(s)
    if esc is not None:
        prefix.append(esc)
        s = esc
    corners_world = _CORNER_NODES @ rot.T + origin
    ok = np.all((corners_world >= 0.0) & (corners_world <= 512.0), axis=1)
    nodes = [s, g] + [c for c, k in zip(_CORNER_NODES, ok, strict=True) if k]
    n = len(nodes)
    dist = [math.inf] * n
    prev = [-1] * n
    dist[0] = 0.0
    heap = [(0.0, 0)]
    while heap:
        d, i = heapq.heappop(heap)
        if d > dist[i]:
            continue
        if i == 1:
            break
        for j in range(1, n):
            if j == i or not _clear(nodes[i], nodes[j]):
                continue
            nd = d + float(np.hypot(*(nodes[j] - nodes[i])))
            if nd < dist[j]:
                dist[j], prev[j] = nd, i
                heapq.heappush(heap, (nd, j))
    if not math.isfinite(dist[1]):
        return None
    chain, i = [], 1
    while i != 0:
        chain.append(nodes[i])
        i = prev[i]
    body_path = prefix + chain[::-1]
    return [p @ rot.T + origin for p in body_path]


def _path_length(path: list[np.ndarray]) -> float:
    return float(sum(np.hypot(*(b - a)) for a, b in zip(path[:-1], path[1:], strict=True)))


def _point_along(path: list[np.ndarray], dist: float) -> np.ndarray:
    """The point ``dist`` pixels along the polyline (its end if shorter)."""
    for a, b in zip(path[:-1], path[1:], strict=True):
        seg = float(np.hypot(*(b - a)))
        if dist <= seg and seg > 0:
            return a + (b - a) * (dist / seg)
        dist -= seg
    return path[-1]


@dataclass
class _Push:
    contact: np.ndarray  # block frame
    normal: np.ndarray  # outward normal, block frame
    steps: int  # physics-checked length of the push
    depth: float  # how far inside the outline the target sits while pushing (pixels)


GAP = 3.0  # between the agent's edge and the block when a push starts
SETTLE_DIST = 1.0  # a push starts once the agent is this close to its start point (pixels) ...
SETTLE_SPEED = 15.0  # ... and slower than this (pixels per second)


def _clear_of_block(a: np.ndarray, b: np.ndarray, pose: np.ndarray) -> bool:
    """Whether the agent can move straight from a to b without touching the block (world points)."""
    rot = _rot(pose[2])
    pa, pb = (a - pose[:2]) @ rot, (b - pose[:2]) @ rot
    r = AGENT_RADIUS + 1.0
    boxes = ((-60.0 - r, -r, 60.0 + r, 30.0 + r), (-15.0 - r, 30.0, 15.0 + r, 120.0 + r))
    return not any(_segment_hits_box(pa, pb, box) for box in boxes)


def _push_target(pose: np.ndarray, push: _Push) -> np.ndarray:
    """Where the agent aims while pushing: ``depth`` inside the outline, at the contact point."""
    rot = _rot(pose[2])
    c = push.contact @ rot.T + pose[:2]
    n = push.normal @ rot.T
    return c + n * (AGENT_RADIUS - push.depth)


def _pre_contact(
    pose: np.ndarray, contact: np.ndarray, normal: np.ndarray, gap: float
) -> np.ndarray:
    """World point where the agent's centre sits ``gap`` pixels off the contact (block frame)."""
    rot = _rot(pose[2])
    return (contact + normal * (AGENT_RADIUS + gap)) @ rot.T + pose[:2]


class PushTExpert:
    """Pushes the T home by choosing, again and again, the best push among candidate contacts.

    Each choice simulates every candidate push (a contact point on the T's outline, pushed along
    the inward normal) on a private physics world for up to ``horizon`` steps, and picks the
    contact and push length with the best relative drop of the corner error per step spent
    (travelling round the block to the contact, then pushing). The agent then travels round the
    block (keeping clearance), settles at the contact, pushes while tracking the contact point, and
    chooses again. Pushes get gentler as the block nears the goal.
    """

    def __init__(self, env: PushT, horizon: int = 10) -> None:
        self.env = env
        self.horizon = horizon  # longest simulated push (steps)
        self.reset(None)

    def reset(self, seed: int | None = None) -> None:
        rng = np.random.default_rng(seed)
        # A little per-episode personality: travel speed (lead of the target in pixels).
        self.lead = float(rng.uniform(26.0, 38.0))
        self._push: _Push | None = None
        self._phase = "choose"
        self._steps_left = 0

    # --------------------------------------------------------------------- choosing a push
    def _simulate(self, pose: np.ndarray, push: _Push, steps: int) -> list[float]:
        world: World = build_world()
        world.block.angle = float(pose[2])  # angle first, then position: the exact pose
        world.block.position = (float(pose[0]), float(pose[1]))
        world.agent.position = tuple(_pre_contact(pose, push.contact, push.normal, GAP))
        errors = []
        for _ in range(steps):
            b = world.block
            p = np.array([b.position[0], b.position[1], b.angle])
            agent = np.array(world.agent.position)
            target = _limit(agent, _push_target(p, push))
            _sim_step(world, (float(target[0]), float(target[1])))
            errors.append(pose_error(b.position[0], b.position[1], b.angle))
        return errors

    def _choose(self, agent: np.ndarray, pose: np.ndarray) -> _Push | None:
        err = pose_error(*pose)
        log_err = math.log(err + 0.5)
        depths = [float(np.clip(0.2 * err, 2.5, 18.0))]
        if err < 12.0:
            depths.append(1.5)
        best: tuple[float, _Push] | None = None
        for contact, normal in PUSH_CANDIDATES:
            q = _pre_contact(pose, contact, normal, GAP)
            if not (0.0 <= q[0] <= 512.0 and 0.0 <= q[1] <= 512.0):
                continue
            approach = _pre_contact(pose, contact, normal, INFLATE + 4.0 - AGENT_RADIUS)
            path = plan_path(agent, approach, pose)
            if path is None:
                continue
            travel = _path_length(path) + float(np.hypot(*(q - approach)))
            travel_steps = travel / (0.5 * self.lead) + 2.0
            for depth in depths:
                push = _Push(contact, normal, self.horizon, depth)
                errors = self._simulate(pose, push, self.horizon)
                for h, e in enumerate(errors, start=1):
                    # Relative improvement per step spent (travelling + pushing).
                    score = (math.log(e + 0.5) - log_err) / (travel_steps + h)
                    if best is None or score < best[0]:
                        best = (score, _Push(contact, normal, h, depth))
        return None if best is None else best[1]

    # --------------------------------------------------------------------- acting
    def act(self, obs: Any) -> np.ndarray:
        env = self.env
        agent = env.agent_position
        pose = env.block_pose
        if self._phase == "choose":
            self._push = self._choose(agent, pose)
            if self._push is None:  # no reachable push: stay put
                return np.clip(agent, 0.0, 512.0).astype(np.float32)
            self._phase = "travel"
            self._steps_left = self._push.steps
        push = self._push
        assert push is not None
        if self._phase == "travel":
            q = _pre_contact(pose, push.contact, push.normal, GAP)
            dist_q = float(np.hypot(*(q - agent)))
            speed = float(np.hypot(*env.world.agent.velocity))
            if dist_q < SETTLE_DIST and speed < SETTLE_SPEED:
                self._phase = "push"  # at rest at the contact: the push goes as simulated
            elif dist_q < 2 * self.lead and _clear_of_block(agent, q, pose):
                return _limit(agent, q).astype(np.float32)
            else:
                approach = _pre_contact(
                    pose, push.contact, push.normal, INFLATE + 4.0 - AGENT_RADIUS
                )
                path = plan_path(agent, approach, pose)
                if path is None:
                    self._phase = "choose"
                    return np.clip(agent, 0.0, 512.0).astype(np.float32)
                path = path + [q]
                target = _point_along(path, self.lead)
                return _limit(agent, target).astype(np.float32)
        # push
        target = _limit(agent, _push_target(pose, push))
        self._steps_left -= 1
        if self._steps_left <= 0:
            self._phase = "choose"
        return target.astype(np.float32)


# ================================================================================== TreeDetour
class TreeDetourExpert:
    """Drives round the tree on a side drawn 50/50 from the seed, along a smooth randomised path.

    Per episode it draws the side, the lateral clearance from the tree, where the path bends and
    the speed (which also wobbles slowly); the target runs along the path ahead of the agent and
    waits when the agent falls more than 40 px behind.
    """

    def __init__(self, env: TreeDetour) -> None:
        self.env = env
        self.reset(None)

    def reset(self, seed: int | None = None) -> None:
        # A stream of its own: seeded like the env (default_rng(seed)), the first draw would be
        # the env's own first draw, the start x, and the route would follow the start position.
        self.rng = np.random.default_rng(None if seed is None else [seed, _EXPERT_STREAM])
        self.side = "left" if self.rng.random() < 0.5 else "right"
        self._path: np.ndarray | None = None
        self._progress = 0.0

    def _make_path(self, start: np.ndarray, goal: np.ndarray) -> np.ndarray:
        env, rng = self.env, self.rng
        tx, ty = env.tree_center
        sign = -1.0 if self.side == "left" else 1.0
        min_clear = env.tree_radius + env.agent_radius + 12.0
        for extra in range(20):
            offset = env.tree_radius + env.agent_radius + rng.uniform(22.0, 55.0) + 6.0 * extra
            lower = np.array([tx + sign * (offset - rng.uniform(0, 10)), ty + rng.uniform(25, 70)])
            upper = np.array([tx + sign * (offset - rng.uniform(0, 10)), ty - rng.uniform(25, 70)])
            pts = _catmull_rom(np.array([start, lower, upper, goal]), samples=40)
            clear = np.min(np.hypot(pts[:, 0] - tx, pts[:, 1] - ty))
            if clear >= min_clear:
                return pts
        return pts

    def act(self, obs: Any) -> np.ndarray:
        env = self.env
        agent = env.agent_position
        if self._path is None:
            self._path = self._make_path(agent, env.goal_position)
            self._speed = float(self.rng.uniform(9.0, 17.0))  # pixels per step along the path
            self._phase = float(self.rng.uniform(0.0, 2 * math.pi))  # of the speed wobble
            self._step = 0
        path = list(self._path)
        # Advance the carrot along the path at the episode's speed (with a slow wobble), waiting
        # for the agent when it falls behind.
        step = self._speed * (1.0 + 0.2 * math.sin(0.35 * self._step + self._phase))
        self._step += 1
        ahead = _point_along(path, self._progress + step)
        if np.hypot(*(ahead - agent)) <= 40.0:
            self._progress += step
        target = _point_along(path, self._progress)
        return _limit(agent, target).astype(np.float32)


def _catmull_rom(points: np.ndarray, samples: int) -> np.ndarray:
    """A uniform Catmull-Rom curve through ``points`` (K, 2), ``samples`` points per span."""
    p = np.vstack([2 * points[0] - points[1], points, 2 * points[-1] - points[-2]])
    out = []
    t = np.linspace(0.0, 1.0, samples, endpoint=False)[:, None]
    for i in range(1, len(p) - 2):
        p0, p1, p2, p3 = p[i - 1], p[i], p[i + 1], p[i + 2]
        out.append(
            0.5
            * (
                2 * p1
                + (-p0 + p2) * t
                + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2
                + (-p0 + 3 * p1 - 3 * p2 + p3) * t**3
            )
        )
    out.append(points[-1][None, :])
    return np.vstack(out)


# ====================================================================================== Maze2D
class MazeExpert:
    """Follows a shortest path of cells (BFS) to the goal with a velocity-tracking PD controller.

    Per episode, from a stream of its own, it draws one of the shortest paths uniformly (so where
    two routes are equally short, demos contain both), jitters the waypoints at the path's cell
    centres by up to ``WAYPOINT_JITTER``, and draws a cruise speed that also wobbles slowly. The
    carrot runs ``LOOKAHEAD`` ahead of the agent's progress along the waypoint polyline; the
    desired velocity points at it, slowing down to stop at the goal; the force is
    (K_V (v_desired - v) + DAMPING v) / ACCEL, clipped to [-1, 1]^2.
    """

    WAYPOINT_JITTER = 0.15  # cells
    LOOKAHEAD = 0.45  # cells
    SPEED_RANGE = (1.0, 2.4)  # cruise speed, cells per second
    K_V = 6.0  # 1/s, velocity gain
    BRAKE = 3.0  # cells/s^2: the slow-down before the goal

    def __init__(self, env: Maze2D) -> None:
        self.env = env
        self.reset(None)

    def reset(self, seed: int | None = None) -> None:
        # A stream of its own (as the TreeDetour expert): seeded like the env, its draws would
        # repeat the env's own, and the route would follow the start cell.
        self.rng = np.random.default_rng(None if seed is None else [seed, _MAZE_EXPERT_STREAM])
        self.speed = float(self.rng.uniform(*self.SPEED_RANGE))
        self._wobble = float(self.rng.uniform(0.0, 2 * math.pi))
        self.route: list[tuple[int, int]] | None = None
        self._path: np.ndarray | None = None
        self._progress = 0.0
        self._step = 0

    def _plan(self, agent: np.ndarray, goal: np.ndarray) -> None:
        maze = self.env.maze
        start_cell, goal_cell = maze.cell_of(*agent), maze.cell_of(*goal)
        route = maze.sample_shortest_path(start_cell, goal_cell, self.rng)
        if route is None:  # unreachable (not in the shipped layouts): head straight for the goal
            route = [start_cell, goal_cell]
        self.route = route
        j = self.WAYPOINT_JITTER
        points = [agent]
        for cell in route[1:-1]:
            points.append(maze.cell_center(*cell) + self.rng.uniform(-j, j, size=2))
        points.append(goal)
        self._path = np.array(points)
        self._lengths = np.hypot(*np.diff(self._path, axis=0).T)
        self._total = float(self._lengths.sum())

    def _project(self, p: np.ndarray) -> float:
        """Arc length of the point of the path nearest ``p``, searching a little ahead of the
        progress so far (the path never runs backwards)."""
        path, lengths = self._path, self._lengths
        best, best_s = math.inf, self._progress
        s0 = 0.0
        for a, b, seg in zip(path[:-1], path[1:], lengths, strict=True):
            if s0 + seg >= self._progress - 1e-9 and s0 <= self._progress + 1.0 and seg > 0:
                t = float(np.clip(np.dot(p - a, b - a) / (seg * seg), 0.0, 1.0))
                s = s0 + t * seg
                d = float(np.hypot(*(a + (b - a) * t - p)))
                if s >= self._progress and d < best:
                    best, best_s = d, s
            s0 += seg
        return best_s

    def act(self, obs: Any) -> np.ndarray:
        env = self.env
        agent, vel, goal = env.agent_position, env.agent_velocity, env.goal_position
        if self._path is None:
            self._plan(agent, goal)
        self._progress = self._project(agent)
        carrot = _point_along(list(self._path), self._progress + self.LOOKAHEAD)
        to_carrot = carrot - agent
        dist = float(np.hypot(*to_carrot))
        remaining = max(self._total - self._progress, 0.0) + float(np.hypot(*(goal - carrot)))
        cruise = self.speed * (1.0 + 0.15 * math.sin(0.3 * self._step + self._wobble))
        self._step += 1
        speed = min(cruise, math.sqrt(2.0 * self.BRAKE * remaining), 4.0 * dist)
        desired = to_carrot / dist * speed if dist > 1e-9 else np.zeros(2)
        force = (self.K_V * (desired - vel) + maze2d.DAMPING * vel) / maze2d.ACCEL
        return np.clip(force, -1.0, 1.0).astype(np.float32)
