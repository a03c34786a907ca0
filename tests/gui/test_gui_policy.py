"""The policy view runs a real checkpoint and shows its denoising, frame by frame."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from dp_agent.agent import DiffusionPolicyAgent
from dp_agent.config import PolicyConfig
from dp_agent.diffusion import SAMPLERS
from dp_agent.gui.main_window import TAB_POLICY, TAB_RECORD
from dp_agent.gui.policy_worker import PolicyInfo
from dp_agent.policy import DenoiseStep


def _load(window, qtbot, checkpoint):
    window.tabs.setCurrentIndex(TAB_POLICY)
    panel = window.policy_panel
    with qtbot.waitSignal(panel.policy_loaded, timeout=60_000):
        panel.load(checkpoint)
    return panel


def endless(task):
    """Episodes of ``task`` never end (the untrained test policy may run into the tree at once;
    the tests that use this look at what is drawn while a plan is executed)."""
    step = task.step

    def never_done(action):
        obs, reward, _, _, info = step(action)
        return obs, reward, False, False, info

    task.step = never_done
    return task


@pytest.mark.parametrize(("sampler", "steps"), [("ddim", 5), ("dpmsolver++", 3), ("ddpm", 7)])
def test_denoising_view_gets_k_plus_1_frames_that_are_the_policys_samples(
    window, qtbot, tiny_checkpoint, sampler, steps
):
    panel = _load(window, qtbot, tiny_checkpoint)
    endless(panel.task)
    panel.sampler_combo.setCurrentIndex(panel.sampler_combo.findData(sampler))
    panel.steps_spin.setValue(steps)
    panel.samples_spin.setValue(5)
    panel.speed_spin.setValue(0)  # instant animation
    assert panel.start()
    qtbot.waitUntil(lambda: panel.plans_completed >= 1, timeout=60_000)
    plan = panel.plan
    panel.stop()

    assert [f.step for f in plan.frames] == list(range(steps + 1))
    assert all(f.total == steps for f in plan.frames)
    tp = panel.policy.config.pred_horizon
    assert plan.frames[0].sample.shape == (5, tp, 2)
    # the same samples as the policy gives for that history and seed
    fresh = DiffusionPolicyAgent.load(tiny_checkpoint, device="cpu")
    expected = fresh.sample(
        plan.history,
        num_samples=5,
        sampler=sampler,
        num_inference_steps=steps,
        seed=plan.seed,
        return_trajectory=True,
    )
    np.testing.assert_allclose(np.stack([f.sample for f in plan.frames]), expected, atol=1e-4)


def test_plan_is_executed_after_the_animation_with_chunk_and_queue_drawn(
    window, qtbot, tiny_checkpoint
):
    panel = _load(window, qtbot, tiny_checkpoint)
    cfg = panel.policy.config
    endless(panel.task)
    panel.steps_spin.setValue(4)
    panel.speed_spin.setValue(200)  # animated: 5 frames at 200 steps/s
    assert panel.start()
    qtbot.waitUntil(lambda: panel.episode_steps >= 2, timeout=60_000)
    panel.pause_button.setChecked(True)
    view = window.view
    assert view.samples is not None and view.samples.shape == (8, cfg.pred_horizon, 2)
    assert view.samples_fraction == 1.0  # the final iterate stays on screen
    assert view.plan is not None and view.plan.shape == (cfg.pred_horizon, 2)
    start = cfg.obs_horizon - 1
    assert view.executed == (start, start + cfg.action_horizon)
    assert view.queued is not None and len(view.queued) <= cfg.action_horizon - 1
    steps = panel.episode_steps
    qtbot.wait(300)
    assert panel.episode_steps == steps  # paused

    # scrubbing shows earlier iterates, down to pure noise
    panel.player.scrub.setValue(0)
    assert view.samples_fraction == 0.0
    np.testing.assert_allclose(view.samples, panel.plan.frames[0].sample)
    assert "pure noise" in panel.player.step_label.text()
    panel.player.scrub.setValue(4)
    np.testing.assert_allclose(view.samples, panel.plan.frames[-1].sample)


class CountingDenoiser(torch.nn.Module):
    """The real denoiser, counting its calls and their batch sizes."""

    def __init__(self, inner: torch.nn.Module):
        super().__init__()
        self.inner = inner
        self.batches: list[int] = []

    def forward(self, x, k, cond):
        self.batches.append(int(x.shape[0]))
        return self.inner(x, k, cond)


def test_the_executed_plan_is_the_highlighted_sample_of_one_sampling_run(
    window, qtbot, tiny_checkpoint
):
    panel = _load(window, qtbot, tiny_checkpoint)
    window.loop.stop()  # the test drives the control steps itself
    agent = panel.worker.agent  # inspected while the worker waits for requests
    endless(panel.task)
    cfg = agent.config
    steps, n = 3, 4
    counter = CountingDenoiser(agent.policy.denoiser)
    agent.policy.denoiser = counter
    agent.set_backend("eager")  # the counter is not a U-Net: no compiled backends
    executed = []
    env_step = panel.task.step
    panel.task.step = lambda action: (executed.append(np.array(action)), env_step(action))[1]
    panel.steps_spin.setValue(steps)
    panel.samples_spin.setValue(n)
    panel.speed_spin.setValue(0)
    assert panel.start()

    def control_step():
        done = panel.episode_steps
        qtbot.waitUntil(lambda: (panel.tick(), panel.episode_steps > done)[1], timeout=60_000)

    control_step()
    # one sampling run of n chunks for the re-plan: K denoiser calls on a batch of n
    assert counter.batches == [n] * steps
    plan = panel.plan
    final = plan.frames[-1].sample  # (n, Tp, Da)
    chunk = agent.last_plan(0)
    assert sum(np.array_equal(chunk, s) for s in final) >= 1
    np.testing.assert_array_equal(chunk, final[plan.executed])
    assert window.view.samples_highlight == plan.executed  # drawn highlighted
    start, ta = cfg.obs_horizon - 1, cfg.action_horizon
    low, high = agent.action_space.low, agent.action_space.high
    expected = np.clip(chunk[start : start + ta], low, high)
    # the rest of the executed slice is what is queued, and it is executed in order
    np.testing.assert_allclose(
        np.clip(panel.last_result.queued, low, high), expected[1:], rtol=1e-6
    )
    while len(executed) < ta:
        assert len(counter.batches) == steps  # no sampling while the queue lasts
        control_step()
    np.testing.assert_allclose(np.array(executed), expected[: len(executed)], rtol=1e-6)

    control_step()  # the next re-plan: again one run of n, and its sample is executed
    assert panel.plans_completed == 2 and counter.batches == [n] * (2 * steps)
    chunk = agent.last_plan(0)
    np.testing.assert_array_equal(chunk, panel.plan.frames[-1].sample[panel.plan.executed])
    np.testing.assert_allclose(executed[-1], np.clip(chunk[start], low, high), rtol=1e-6)


def test_the_window_keeps_handling_events_while_the_policy_samples(window, qtbot, tiny_checkpoint):
    panel = _load(window, qtbot, tiny_checkpoint)
    panel.sampler_combo.setCurrentIndex(panel.sampler_combo.findData("ddpm"))
    panel.steps_spin.setValue(100)
    panel.samples_spin.setValue(64)
    panel.speed_spin.setValue(0)
    assert panel.start()
    qtbot.waitUntil(lambda: panel.frames_received >= 1, timeout=60_000)
    # the worker is now sampling 64 trajectories with 100 DDPM steps; the UI thread stays free
    ticks = []
    from PyQt6.QtCore import QTimer

    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(1))
    timer.start(10)
    qtbot.wait(500)
    timer.stop()
    panel.stop()
    # the UI thread kept handling timer events while the worker sampled (a blocked event loop
    # delivers at most one); how many depends on the machine's load, so no rate is asserted
    assert len(ticks) >= 5


def test_stopping_mid_denoising_queues_nothing_and_a_restart_plans_afresh(
    window, qtbot, tiny_checkpoint
):
    panel = _load(window, qtbot, tiny_checkpoint)
    agent = panel.worker.agent  # inspected while the worker waits for requests
    endless(panel.task)
    panel.sampler_combo.setCurrentIndex(panel.sampler_combo.findData("ddpm"))
    panel.steps_spin.setValue(100)
    panel.samples_spin.setValue(64)
    panel.speed_spin.setValue(0)
    obs0 = np.array(panel.task.obs, np.float32)
    assert panel.start()
    qtbot.waitUntil(lambda: panel.frames_received >= 1, timeout=60_000)
    with qtbot.waitSignal(panel.worker.acted, timeout=60_000) as aborted:
        panel.stop()
    assert aborted.args[0].aborted
    assert panel.episode_steps == 0 and panel.plans_completed == 0
    assert len(agent.queued_actions(0)) == 0 and agent.last_plan(0) is None
    assert panel.plan is None and window.view.samples is None

    panel.sampler_combo.setCurrentIndex(panel.sampler_combo.findData("ddim"))
    panel.steps_spin.setValue(2)
    panel.samples_spin.setValue(3)
    assert panel.start()
    qtbot.waitUntil(lambda: panel.episode_steps >= 1, timeout=60_000)
    panel.stop()
    plan = panel.plan
    assert [f.step for f in plan.frames] == [0, 1, 2] and plan.frames[-1].sample.shape[0] == 3
    np.testing.assert_array_equal(agent.last_plan(0), plan.frames[-1].sample[plan.executed])
    # the same episode goes on: the plan is conditioned on its first observation
    np.testing.assert_allclose(plan.history, np.repeat(obs0[None], len(plan.history), 0))


def test_loading_a_policy_switches_to_the_task_it_was_trained_on(window, qtbot, tiny_checkpoint):
    window.set_task("Pendulum-v1")
    panel = window.policy_panel
    window.tabs.setCurrentIndex(TAB_POLICY)
    with qtbot.waitSignal(panel.policy_loaded, timeout=60_000, raising=False):
        panel.load(tiny_checkpoint)
    # the policy names its task: the window switches to it
    qtbot.waitUntil(lambda: window.task_id == "dp_agent/TreeDetour-v0", timeout=10_000)
    assert panel.policy is not None


def test_a_broken_checkpoint_gives_a_message_not_a_crash(window, qtbot, tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"nonsense")
    window.tabs.setCurrentIndex(TAB_POLICY)
    panel = window.policy_panel
    with qtbot.waitSignal(panel.worker.load_failed, timeout=60_000):
        panel.load(bad)
    qtbot.waitUntil(lambda: "bad.safetensors" in panel.error_label.text())
    assert panel.policy is None and not panel.run_button.isEnabled()


def _assert_no_plan_drawn(view):
    assert view.plan is None and view.queued is None and view.samples is None
    assert not view.caption.startswith(("executing", "denoising"))


def test_new_episode_episode_end_and_task_switch_clear_the_old_plan(window, qtbot, tiny_checkpoint):
    panel = _load(window, qtbot, tiny_checkpoint)
    view = window.view
    ending = {"now": False}
    step = panel.task.step

    def step_until_told(action):
        obs, reward, _, _, info = step(action)
        return obs, reward, ending["now"], False, info

    panel.task.step = step_until_told
    panel.steps_spin.setValue(2)
    panel.samples_spin.setValue(3)
    panel.speed_spin.setValue(0)

    def run_until_a_plan_is_drawn():
        assert panel.start()
        qtbot.waitUntil(
            lambda: view.plan is not None and view.caption.startswith("executing"), timeout=60_000
        )

    run_until_a_plan_is_drawn()
    ending["now"] = True  # the next step ends the episode
    qtbot.waitUntil(lambda: not panel.running, timeout=60_000)
    _assert_no_plan_drawn(view)
    assert view.caption.startswith("episode ended")

    ending["now"] = False
    run_until_a_plan_is_drawn()
    panel.stop()
    panel.reset_button.click()  # New episode
    _assert_no_plan_drawn(view)
    window.tabs.setCurrentIndex(TAB_RECORD)  # and nothing old comes back when the tab is shown
    window.tabs.setCurrentIndex(TAB_POLICY)
    _assert_no_plan_drawn(view)
    assert panel.player.step_label.text() == "denoising step – / –"

    run_until_a_plan_is_drawn()
    window.set_task("dp_agent/PushT-v0")  # (the TreeDetour policy does not fit PushT)
    _assert_no_plan_drawn(view)
    assert view.caption == ""


def test_the_gui_thread_never_touches_the_agent(window, qtbot, tiny_checkpoint, monkeypatch):
    panel = _load(window, qtbot, tiny_checkpoint)
    threads: set[int] = set()
    read = DiffusionPolicyAgent.__getattribute__

    def noting_the_thread(agent, name):  # every attribute read of any agent, by any reference
        threads.add(threading.get_ident())
        return read(agent, name)

    monkeypatch.setattr(DiffusionPolicyAgent, "__getattribute__", noting_the_thread)
    endless(panel.task)
    panel.sampler_combo.setCurrentIndex(panel.sampler_combo.findData("dpmsolver++"))
    panel.steps_spin.setValue(2)
    panel.speed_spin.setValue(0)
    assert panel.start()
    qtbot.waitUntil(lambda: panel.plans_completed >= 1 and panel.episode_steps >= 1, timeout=60_000)
    assert isinstance(panel.plan.frames[0], DenoiseStep)
    panel.player.scrub.setValue(0)
    panel.x0_check.setChecked(True)
    panel.new_episode()
    window.tabs.setCurrentIndex(TAB_RECORD)
    window.tabs.setCurrentIndex(TAB_POLICY)
    panel.stop()
    assert threads, "the worker used the agent"
    assert threading.main_thread().ident not in threads
    assert isinstance(panel.policy, PolicyInfo) and panel.policy.path == tiny_checkpoint


def test_sampler_names_and_default_steps_come_from_the_policy_config(
    window, qtbot, tiny_checkpoint
):
    panel = window.policy_panel
    combo = panel.sampler_combo
    assert [combo.itemData(i) for i in range(combo.count())] == list(SAMPLERS)
    assert [combo.itemText(i) for i in range(combo.count())] == list(SAMPLERS.values())
    defaults = PolicyConfig()
    combo.setCurrentIndex(combo.findData("ddpm"))
    assert panel.steps_spin.value() == defaults.default_steps("ddpm")
    panel = _load(window, qtbot, tiny_checkpoint)
    cfg = panel.policy.config
    assert combo.currentData() == cfg.sampler
    assert panel.steps_spin.value() == cfg.num_inference_steps
    for name in SAMPLERS:
        combo.setCurrentIndex(combo.findData(name))
        assert panel.steps_spin.value() == cfg.default_steps(name)


def test_a_keypoints_pushT_policy_runs_on_an_env_made_with_its_obs_type(window, qtbot, tmp_path):
    import gymnasium as gym
    from support import tiny_policy

    env = gym.make("dp_agent/PushT-v0", obs_type="keypoints")
    agent = DiffusionPolicyAgent(
        tiny_policy(obs_dim=18),
        env.observation_space,
        env.action_space,
        "dp_agent/PushT-v0",
        device="cpu",
        env_kwargs={"obs_type": "keypoints"},
    )
    path = agent.save(tmp_path / "keypoints.safetensors")
    window.set_task("dp_agent/PushT-v0")
    panel = _load(window, qtbot, path)
    assert panel.policy is not None  # not unloaded as a misfit
    assert panel.task.env.observation_space.shape == (18,)
    assert window.record_panel.task.env.observation_space.shape == (5,)  # Record keeps state
    panel.speed_spin.setValue(0)
    assert panel.start()
    qtbot.waitUntil(lambda: panel.plans_completed >= 1, timeout=60_000)
    panel.stop()


@pytest.mark.slow
def test_the_shipped_policy_plans_in_the_app_on_the_default_backend(window, qtbot):
    """The app's worker is a QThread, whose Python thread state PyQt makes and drops around
    every slot: OpenVINO's requests kept in a threading.local died with it and crashed the
    app (segfault or double free, every run, within the first plans)."""
    import importlib.util

    from dp_agent.data.shipped import shipped_policy

    panel = _load(window, qtbot, shipped_policy("dp_agent/TreeDetour-v0"))
    policy = panel.worker.agent.policy
    assert policy.runner.name == "auto"  # as predict and the evaluation run it
    endless(panel.task)
    panel.speed_spin.setValue(0)
    assert panel.start()
    qtbot.waitUntil(lambda: panel.plans_completed >= 10, timeout=90_000)
    panel.stop()
    if importlib.util.find_spec("openvino") is not None:
        assert policy.runner.backend().chosen == "openvino"


def test_an_image_policy_shows_its_network_input_in_the_corner(window, qtbot, tmp_path):
    import gymnasium as gym
    from support import tiny_policy

    from dp_agent.nets.vision import crop_images
    from dp_agent.observations import ObsSpec

    env = gym.make("dp_agent/PushT-v0", obs_type="pixels")
    spec = ObsSpec.from_space(env.observation_space)
    policy = tiny_policy(
        obs_dim=2,
        obs_spec=spec.to_dict(),
        vision_widths=(8, 8, 8, 8),
        vision_crop=84,
        image_feature_dim=8,
    )
    agent = DiffusionPolicyAgent(
        policy,
        env.observation_space,
        env.action_space,
        "dp_agent/PushT-v0",
        device="cpu",
        env_kwargs={"obs_type": "pixels"},
    )
    window.set_task("dp_agent/PushT-v0")
    panel = _load(window, qtbot, agent.save(tmp_path / "image.safetensors"))
    view = panel.view
    assert view.inset_shown and view.inset_caption == "policy input 84×84"
    pixels = torch.as_tensor(panel.task.obs["pixels"]).permute(2, 0, 1)[None]
    expected = crop_images(pixels, 84, random=False)[0].permute(1, 2, 0).numpy()
    shown = view._inset
    ptr = shown.constBits()
    ptr.setsize(shown.sizeInBytes())
    rows = np.frombuffer(ptr, np.uint8).reshape(84, shown.bytesPerLine())[:, : 84 * 3]
    np.testing.assert_array_equal(rows.reshape(84, 84, 3), expected)  # the centre crop
    window.tabs.setCurrentIndex(TAB_RECORD)
    assert not view.inset_shown  # only the Policy tab shows it
