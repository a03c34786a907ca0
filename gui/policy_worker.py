"""The policy worker: owns the agent in a thread of its own, so that sampling never blocks the
window. Every call on the agent happens in that thread; the GUI talks to it only through the
typed messages below (``PolicyInfo`` once a checkpoint is loaded, ``ActRequest`` -> ``ActResult``
per control step, and the denoising iterates as ``dp_agent.policy.DenoiseStep``).

A re-plan (the agent's action queue is empty) is ONE sampling run of N chunks on the agent's
observation history (``agent.sample`` with ``on_step``, which emits the K+1 iterates while they
are computed); sample ``EXECUTED_SAMPLE`` of the final iterate is queued as the plan
(``agent.observe`` -> ``agent.queue_plan`` -> ``agent.act``). The N samples are independent
draws from the policy for that history, so executing the first one executes a policy sample.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from PyQt6.QtCore import QObject, pyqtSignal, pyqtSlot

from dp_agent.config import PolicyConfig
from dp_agent.observations import ObsSpec

EXECUTED_SAMPLE = 0  # which of a re-plan's N samples is executed (and highlighted)


@dataclass(frozen=True)
class PolicyInfo:
    """What the GUI knows of the loaded policy: copied from the agent in the worker thread."""

    path: Path
    env_id: str | None
    config: PolicyConfig  # a copy (horizons, default sampler, default_steps)
    obs_spec: ObsSpec  # the parts of an observation
    env_kwargs: dict  # what the policy's env was made with, e.g. {"obs_type": "keypoints"}
    action_shape: tuple[int, ...]
    sampler: str
    num_inference_steps: int
    device: str

    @property
    def executed_slice(self) -> tuple[int, int]:
        """The part [start, end) of a plan that is executed: [To-1, To-1+Ta)."""
        start = self.config.obs_horizon - 1
        return start, start + self.config.action_horizon


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


@dataclass
class ActResult:
    """The worker's answer to an ``ActRequest`` (``error`` or ``aborted``: nothing else is set)."""

    request_id: int
    error: str | None = None
    aborted: bool = False  # stopped mid-denoising: nothing queued, the agent keeps the obs
    replanned: bool = False
    action: np.ndarray | None = None  # (Da,) to execute now
    queued: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))  # (n, Da)
    plan: np.ndarray | None = None  # (Tp, Da) the chunk being executed
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


def network_input_image(info: PolicyInfo, obs: Any) -> np.ndarray | None:
    """The newest frame of the policy's first image part as its network sees it at inference,
    after the centre crop: (h, w, 3) uint8 (None when the policy takes no images or ``obs``
    lacks the part). The crop is ``dp_agent.vision.crop_images``' own, so what is shown is
    what is encoded."""
    import torch

    from dp_agent.vision import crop_images

    parts = info.obs_spec.image_parts
    if not parts or not isinstance(obs, dict) or parts[0].key not in obs:
        return None
    part = parts[0]
    image = torch.as_tensor(np.asarray(obs[part.key]))
    image = image.permute(2, 0, 1) if part.channels_last else image  # (C, H, W)
    cropped = crop_images(image[None], info.config.vision_crop or None, random=False)[0]
    out = cropped.permute(1, 2, 0).numpy()
    return np.repeat(out, 3, axis=2) if out.shape[2] == 1 else np.ascontiguousarray(out[..., :3])


def pin_backend(agent) -> None:
    """Run the U-Net with the pure-PyTorch ``folded`` backend inside the app: OpenVINO (what
    ``auto`` picks when it is installed) aborted the app with "double free or corruption" in
    3 of 3 runs of the shipped TreeDetour policy on this worker thread, while the same policy
    ran fine under OpenVINO in plain Python threads. Other denoisers keep ``auto`` (eager)."""
    from dp_agent.backends import BackendUnavailable

    try:
        agent.policy.set_backend("folded")
    except BackendUnavailable:
        pass


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
            from dp_agent.agent import DiffusionPolicyAgent

            agent = DiffusionPolicyAgent.load(path, device="auto")
            pin_backend(agent)
            info = policy_info(agent, path)
        except Exception as exc:  # noqa: BLE001  (CheckpointError, OSError, ...: one message)
            self.load_failed.emit(f"Could not load the policy {path}: {exc}", load_id)
            return
        self.agent = agent
        self.loaded.emit(info, load_id)

    @pyqtSlot()
    def unload(self) -> None:
        self.agent = None

    @pyqtSlot(object)
    def act(self, request: ActRequest) -> None:
        """Answer ``request`` with one ``ActResult`` on ``acted``."""
        self._abort.clear()
        try:
            result = self._act(request)
        except _Aborted:
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

    def _replan(self, request: ActRequest, result: ActResult) -> None:
        """One sampling run; its executed sample becomes the agent's plan."""
        agent = self.agent
        if (request.sampler, request.steps) != (agent.sampler, agent.num_inference_steps):
            agent.set_sampler(request.sampler, request.steps)
        num_samples = request.num_samples if request.live else 1
        history = agent.obs_history(0)

        def on_step(step) -> None:
            if request.live:
                self.frame.emit(request.request_id, step)
            if self._abort.is_set() and step.step < step.total:
                raise _Aborted

        t1 = time.perf_counter()
        chunks = agent.sample(
            history,
            num_samples,
            sampler=agent.sampler,
            num_inference_steps=agent.num_inference_steps,
            seed=request.seed,
            on_step=on_step,
        )
        agent.queue_plan(0, np.array(chunks[EXECUTED_SAMPLE]))
        result.denoise_seconds = time.perf_counter() - t1
        result.num_samples = num_samples
        result.executed_sample = EXECUTED_SAMPLE
        result.seed = request.seed
        result.history = history if request.live else None
