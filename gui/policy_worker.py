"""The policy worker: owns the agent in a thread of its own, so that sampling never blocks the
window. Every call on the agent happens in that thread; the GUI talks to it only through the
typed messages below (``PolicyInfo`` once a checkpoint is loaded, ``ActRequest`` -> ``ActResult``
per control step, the user's goal and keep-out zones as the request's ``Steering``, and the
denoising iterates as ``dp_agent.policy.DenoiseStep``).

Two kinds of agent: a ``DiffusionPolicyAgent`` (action chunks) and a ``DiffuserAgent`` (a
trajectory planner, recognised by its checkpoint's ``planner`` field). For a planner the frames
are the planned positions (N, H, 2) of every denoising iterate, reported by the sampling loop's
``on_step`` while ``predict`` re-plans (``LivePlanner``).

A re-plan (the agent's action queue is empty) is ONE sampling run of N chunks on the agent's
observation history (``agent.sample`` with ``on_step``, which emits the K+1 iterates while they
are computed); sample ``EXECUTED_SAMPLE`` of the final iterate is queued as the plan
(``agent.observe`` -> ``agent.queue_plan`` -> ``agent.act``). The N samples are independent
draws from the policy for that history, so executing the first one executes a policy sample.
With keep-out zones drawn, the sampling is guided by them and the sample with the best J is
queued instead (best-of-N).
"""

from __future__ import annotations

import functools
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from PyQt6.QtCore import QObject, pyqtSignal, pyqtSlot

from dp_agent.config import PolicyConfig
from dp_agent.diffusion.step import DenoiseStep
from dp_agent.observations import ObsSpec

EXECUTED_SAMPLE = 0  # which of a re-plan's N samples is executed (and highlighted)
POLICY, PLANNER = "policy", "planner"  # PolicyInfo.kind


@dataclass(frozen=True)
class PolicyInfo:
    """What the GUI knows of the loaded policy: copied from the agent in the worker thread."""

    path: Path
    env_id: str | None
    config: PolicyConfig  # a copy (horizons, default sampler, default_steps)
    obs_spec: ObsSpec | None  # the parts of an observation (None for a planner)
    env_kwargs: dict  # what the policy's env was made with, e.g. {"obs_type": "keypoints"}
    action_shape: tuple[int, ...]
    sampler: str
    num_inference_steps: int
    device: str
    kind: str = POLICY  # or PLANNER
    horizon: int = 0  # H, steps of a plan (planner)
    replan_every: int = 0  # steps executed of each plan before the next (planner)
    state_key: str | None = None  # the planner's state part and goal part of the observation
    goal_key: str | None = None

    @property
    def is_planner(self) -> bool:
        return self.kind == PLANNER

    @property
    def executed_slice(self) -> tuple[int, int]:
        """The part [start, end) of a plan that is executed: [To-1, To-1+Ta) of a chunk; of a
        planner's plan the states from now to the next re-plan, [0, replan_every]."""
        if self.is_planner:
            return 0, self.replan_every + 1
        start = self.config.obs_horizon - 1
        return start, start + self.config.action_horizon


@dataclass(frozen=True)
class Steering:
    """What the user drew in the view, world units: a goal for the plans (None: the env's) and
    keep-out circles (x, y, r) that guide the sampling (``guide_scale`` α; 0: no gradient
    guidance, the zones then only pick the best of the samples). With ``margin`` > 0 a sample
    that keeps its distance scores better than one that grazes a zone, where J would tie.
    ``walls`` (a maze's wall cells) count against a sample in the best of N while zones are
    drawn."""

    goal: tuple[float, float] | None = None
    circles: tuple[tuple[float, float, float], ...] = ()
    guide_scale: float = 0.0
    margin: float = 0.0  # J also counts positions this close to a zone (so ties are broken)
    walls: tuple[tuple[float, float, float, float], ...] = ()  # boxes (x0, y0, x1, y1)

    def guides(self) -> tuple:
        """The ``dp_agent.guides`` objectives of the zones: a ``KeepOut`` of the circles, and
        one of the walls that only scores (``ScoreOnly``); none without circles."""
        if not self.circles:
            return ()
        from dp_agent.guides import KeepOut

        zones = KeepOut(circles=self.circles, margin=self.margin)
        return (zones, ScoreOnly(KeepOut(boxes=self.walls))) if self.walls else (zones,)


class ScoreOnly:
    """A guide that counts in J, so in the best of N, and never pushes the iterates (its value
    without its gradient). The maze's walls are one: with a zone's J alone, the best of N was
    often a plan that dodged the zone through a wall, while pushing plans out of walls by
    their gradient made more of them end up in one (an 8000-step umaze planner, 16 plans)."""

    def __init__(self, guide):
        self.guide = guide

    def __call__(self, trajectories, timestep: int = 0):
        return self.guide(trajectories, timestep).detach()


@dataclass(frozen=True)
class ActRequest:
    """One control step of env 0: observe ``obs``, re-plan if the queue is empty, act."""

    request_id: int
    obs: Any
    sampler: str
    steps: int
    num_samples: int  # chunks drawn at a re-plan with the live view on (1 with it off)
    live: bool  # emit every denoising iterate
    seed: int  # of the re-plan's noise
    reset: bool = False  # a new episode: forget the history and the queue first
    observe: bool = True  # False: the agent already holds ``obs`` (its re-plan was aborted)
    steering: Steering = field(default_factory=Steering)


@dataclass
class ActResult:
    """The worker's answer to an ``ActRequest`` (``error`` or ``aborted``: nothing else is set)."""

    request_id: int
    error: str | None = None
    aborted: bool = False  # stopped mid-denoising: nothing queued, the agent keeps the obs
    replanned: bool = False
    action: np.ndarray | None = None  # (Da,) to execute now
    queued: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))  # (n, Da)
    plan: np.ndarray | None = None  # (Tp, Da) the chunk being executed; a planner's (H, 2)
    latency: float = 0.0  # seconds for the whole step (observe, sample, act)
    sampler: str = ""
    steps: int = 0
    # set when ``replanned``:
    denoise_seconds: float = 0.0
    num_samples: int = 0
    executed_sample: int = EXECUTED_SAMPLE
    seed: int | None = None
    history: np.ndarray | None = None  # (To, Do) the plan was conditioned on (live view only)


class _Aborted(Exception):
    """Raised inside ``on_step`` to stop a sampling run that is no longer wanted."""


def policy_info(agent, path: str | Path) -> PolicyInfo:
    """The GUI's copy of what it needs to know of ``agent`` (a policy or a planner agent)."""
    planner = getattr(agent, "planner", None)
    if planner is not None:
        return _planner_info(agent, planner, path)
    device = agent.device
    return PolicyInfo(
        path=Path(path),
        env_id=agent.env_id,
        config=replace(agent.config),
        obs_spec=agent.obs_spec,
        env_kwargs=dict(agent.env_kwargs),
        action_shape=tuple(agent.action_space.shape),
        sampler=agent.sampler,
        num_inference_steps=int(agent.num_inference_steps),
        device=getattr(device, "type", str(device)),
    )


def _planner_info(agent, planner, path: str | Path) -> PolicyInfo:
    config = planner.policy.config
    return PolicyInfo(
        path=Path(path),
        env_id=agent.env_id,
        config=replace(config),
        obs_spec=None,
        env_kwargs=dict(agent.env_kwargs),
        action_shape=(planner.action_dim,),
        sampler=agent.sampler or config.sampler,
        num_inference_steps=int(agent.num_inference_steps or config.num_inference_steps),
        device=getattr(planner.device, "type", str(planner.device)),
        kind=PLANNER,
        horizon=int(planner.horizon),
        replan_every=int(agent.replan_every),
        state_key=agent.state_key,
        goal_key=agent.goal_key,
    )


def network_input_image(info: PolicyInfo, obs: Any) -> np.ndarray | None:
    """The newest frame of the policy's first image part as its network sees it at inference,
    after the centre crop: (h, w, 3) uint8 (None when the policy takes no images or ``obs``
    lacks the part). The crop is ``dp_agent.nets.vision.crop_images``' own, so what is shown is
    what is encoded."""
    import torch

    from dp_agent.nets.vision import crop_images

    parts = info.obs_spec.image_parts if info.obs_spec is not None else ()
    if not parts or not isinstance(obs, dict) or parts[0].key not in obs:
        return None
    part = parts[0]
    image = torch.as_tensor(np.asarray(obs[part.key]))
    image = image.permute(2, 0, 1) if part.channels_last else image  # (C, H, W)
    cropped = crop_images(image[None], info.config.vision_crop or None, random=False)[0]
    out = cropped.permute(1, 2, 0).numpy()
    return np.repeat(out, 3, axis=2) if out.shape[2] == 1 else np.ascontiguousarray(out[..., :3])


def is_planner_file(path: str | Path) -> bool:
    """Whether ``path`` is a planner checkpoint (a ``planner`` header field, or a run's
    ``planner.json`` beside it), read from the file's metadata alone; False for anything
    unreadable (loading it as a policy then says what is wrong)."""
    import json

    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            header = json.loads((f.metadata() or {}).get("header", "{}"))
    except Exception:  # noqa: BLE001  (not a safetensors file: the policy loader reports it)
        return False
    return "planner" in header or (Path(path).parent / "planner.json").is_file()


def load_agent(path: str | Path):
    """A ``DiffuserAgent`` for a planner file (its planner reports every denoising iterate,
    ``LivePlanner``), else a ``DiffusionPolicyAgent``; either on the default backend
    (``auto``: OpenVINO for the U-Nets when it is installed), as ``predict`` and the
    evaluation run it."""
    if is_planner_file(path):
        from dp_agent.planning.agent import DiffuserAgent
        from dp_agent.planning.planner import Planner

        return DiffuserAgent(_live_planner_class().wrap(Planner.load(path, "auto")))
    from dp_agent.agent import DiffusionPolicyAgent

    return DiffusionPolicyAgent.load(path, device="auto")


@functools.cache
def _live_planner_class():
    """``LivePlanner``, made on first use: importing this module must not load torch."""
    from dp_agent.planning.planner import Planner

    class LivePlanner(Planner):
        """A ``Planner`` whose sampling loop also reports each iterate to ``listener`` (set
        by the worker around a re-plan), so that ``DiffuserAgent.predict``'s re-plans can be
        watched while they are computed."""

        listener = None

        @classmethod
        def wrap(cls, planner: Planner) -> Planner:
            live = cls(planner.policy, planner.header, planner.device)
            live.value_net, live.path = planner.value_net, planner.path
            return live

        def sample(self, goal_features, *, on_step=None, **kwargs):
            listener = self.listener
            if listener is None:
                return super().sample(goal_features, on_step=on_step, **kwargs)

            def both(step) -> None:
                if on_step is not None:
                    on_step(step)
                listener(step)

            return super().sample(goal_features, on_step=both, **kwargs)

    return LivePlanner


def steered_observation(obs, steering: Steering, goal_key: str | None):
    """The observation a planner plans from: the user's goal in place of the env's."""
    if steering.goal is None or not goal_key or not isinstance(obs, dict):
        return obs
    return {**obs, goal_key: np.asarray(steering.goal, np.float64)}


def positions(values, dims) -> np.ndarray:
    """(..., D) trajectories (torch or NumPy) -> (..., 2) float NumPy positions."""
    if hasattr(values, "detach"):
        values = values.detach().float().cpu().numpy()
    return np.asarray(values)[..., list(dims)]


class PolicyWorker(QObject):
    """Owns the agent; every call on it happens in this object's thread."""

    loaded = pyqtSignal(object, int)  # PolicyInfo, load id
    load_failed = pyqtSignal(str, int)  # message, load id
    frame = pyqtSignal(int, object)  # request id, DenoiseStep (NumPy, env units)
    acted = pyqtSignal(object)  # ActResult

    def __init__(self) -> None:
        super().__init__()
        self.agent = None
        self._abort = threading.Event()

    def abort(self) -> None:
        """Stop the sampling run in progress (thread-safe; the only call from other threads)."""
        self._abort.set()

    @pyqtSlot(str, int)
    def load(self, path: str, load_id: int) -> None:
        try:
            agent = load_agent(path)
            info = policy_info(agent, path)
        except Exception as exc:  # noqa: BLE001  (CheckpointError, OSError, ...: one message)
            self.load_failed.emit(f"Could not load the policy {path}: {exc}", load_id)
            return
        self.agent = agent
        self._steering: Steering | None = None  # what the planner's current plan was made with
        self._since = 0  # steps executed of the planner's current plan
        self.loaded.emit(info, load_id)

    @pyqtSlot()
    def unload(self) -> None:
        self.agent = None

    @pyqtSlot(object)
    def act(self, request: ActRequest) -> None:
        """Answer ``request`` with one ``ActResult`` on ``acted``."""
        self._abort.clear()
        try:
            if getattr(self.agent, "planner", None) is not None:
                result = self._act_planner(request)
            else:
                result = self._act(request)
        except _Aborted:
            self._steering = None  # the planner has no plan now: the next request makes one
            result = ActResult(request.request_id, aborted=True, replanned=True)
        except Exception as exc:  # noqa: BLE001  (shape mismatch etc.: reported, the run stops)
            result = ActResult(request.request_id, error=f"The policy failed: {exc}")
        self.acted.emit(result)

    def _act(self, request: ActRequest) -> ActResult:
        agent = self.agent
        if agent is None:
            raise RuntimeError("no policy is loaded")
        if request.reset:
            agent.reset()
        t0 = time.perf_counter()
        if request.observe or agent.n_envs == 0:
            need = agent.observe(request.obs)
        else:  # the agent already holds this observation (its re-plan was aborted)
            need = [] if len(agent.queued_actions(0)) else [0]
        result = ActResult(request.request_id, replanned=bool(need))
        if need:
            self._replan(request, result)
        action = agent.act()[0]
        plan = agent.last_plan(0)
        result.action = np.asarray(action)
        result.latency = time.perf_counter() - t0
        result.queued = agent.queued_actions(0)
        result.plan = None if plan is None else np.array(plan)
        result.sampler, result.steps = agent.sampler, agent.num_inference_steps
        return result

    def _on_step(self, request: ActRequest, convert=None):
        """The sampling loop's ``on_step``: emit the iterate (live view), stop when aborted."""

        def on_step(step) -> None:
            if request.live:
                self.frame.emit(request.request_id, step if convert is None else convert(step))
            if self._abort.is_set() and step.step < step.total:
                raise _Aborted

        return on_step

    def _replan(self, request: ActRequest, result: ActResult) -> None:
        """One sampling run; its executed sample (the best by the zones' J when the user drew
        keep-out zones, else the first) becomes the agent's plan."""
        agent = self.agent
        if (request.sampler, request.steps) != (agent.sampler, agent.num_inference_steps):
            agent.set_sampler(request.sampler, request.steps)
        guides = request.steering.guides()
        num_samples = request.num_samples if request.live or guides else 1
        history = agent.obs_history(0)
        t1 = time.perf_counter()
        chunks = agent.sample(
            history,
            num_samples,
            sampler=agent.sampler,
            num_inference_steps=agent.num_inference_steps,
            seed=request.seed,
            on_step=self._on_step(request),
            guides=guides,
            guide_scale=request.steering.guide_scale,
        )
        executed = EXECUTED_SAMPLE
        if guides:
            import torch

            from dp_agent.guides import best_of

            executed = int(best_of(torch.as_tensor(chunks), guides, num_samples)[0][0])
        agent.queue_plan(0, np.array(chunks[executed]))
        result.denoise_seconds = time.perf_counter() - t1
        result.num_samples = num_samples
        result.executed_sample = executed
        result.seed = request.seed
        result.history = history if request.live else None

    # ------------------------------------------------------------------ the planner
    def _act_planner(self, request: ActRequest) -> ActResult:
        """One step of a ``DiffuserAgent``: a re-plan at a new episode, a changed goal or zone,
        after ``replan_every`` steps, or after an aborted re-plan; then ``predict``."""
        agent = self.agent
        t0 = time.perf_counter()
        obs = steered_observation(request.obs, request.steering, agent.goal_key)
        replan = (
            request.reset or request.steering != self._steering or self._since >= agent.replan_every
        )
        result = ActResult(request.request_id, replanned=replan)
        if replan:
            self._replan_planner(request, result, obs)
        else:
            action, _ = agent.predict(obs, deterministic=True)
            result.action = np.asarray(action)
        self._since += 1
        plan = agent.last_plan(0)
        pos = list(agent.planner.position_dims)
        result.plan = positions(plan.states[0], pos)  # (H, 2)
        result.queued = result.plan[self._since : agent.replan_every + 1]
        result.latency = time.perf_counter() - t0
        result.sampler = agent.sampler or agent.planner.policy.config.sampler
        result.steps = agent.num_inference_steps or agent.planner.policy.config.num_inference_steps
        return result

    def _replan_planner(self, request: ActRequest, result: ActResult, obs) -> None:
        """One planning call through ``predict``: N plans from noise seeded by the request
        (``reset`` + ``deterministic``: noise_stream(seed, 0, 0)), the user's zones as the
        guides, the best of N by their J executed; the iterates go out while computed."""
        agent, steering = self.agent, request.steering
        agent.sampler, agent.num_inference_steps = request.sampler, request.steps
        agent.guides = steering.guides()
        agent.guidance["guide_scale"] = steering.guide_scale
        agent.num_samples = request.num_samples if request.live or agent.guides else 1
        agent.seed = request.seed
        agent.reset()
        dims = list(agent.planner.position_dims)
        frames: list = []

        def as_positions(step):
            frames.append(positions(step.sample, dims))
            return DenoiseStep(step.step, step.total, frames[-1], positions(step.pred_x0, dims))

        agent.planner.listener = self._on_step(request, as_positions)
        t1 = time.perf_counter()
        try:
            action, _ = agent.predict(obs, deterministic=True)
        finally:
            agent.planner.listener = None
        self._steering, self._since = steering, 0
        result.action = np.asarray(action)
        result.denoise_seconds = time.perf_counter() - t1
        result.num_samples = agent.num_samples
        chosen = positions(agent.last_plan(0).states[0], dims)  # (H, 2)
        final = frames[-1] if frames else chosen[None]
        result.executed_sample = int(np.argmin(np.abs(final - chosen).sum(axis=(1, 2))))
        result.seed = request.seed
        result.history = obs if request.live else None
