"""Progressive distillation: a tiny bimodal teacher distilled to one step keeps both modes, the
student is a checkpoint like any other (its sampler the default, at most K network calls per
chunk), and distillation resumes exactly after an interruption."""

import numpy as np
import pytest
import torch
from test_learning import bimodal_episodes, mode_shares

from dp_agent.agent import DiffusionPolicyAgent
from dp_agent.checkpoint import load_policy, save_policy
from dp_agent.config import DistillConfig, make_configs
from dp_agent.data import DemoWriter
from dp_agent.progress import TrainStep
from dp_agent.training.distill import distill
from dp_agent.training.loop import TrainingError
from dp_agent.training.targets import Grids, ddim_step, distillation_target
from dp_agent.training.train import train

pytestmark = pytest.mark.slow  # distillation runs that must keep both modes


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    """A tiny policy trained on the bimodal task, and its demonstration file."""
    root = tmp_path_factory.mktemp("teacher")
    demos = root / "bimodal.hdf5"
    writer = DemoWriter(demos, {"env_name": "test/Bimodal", "type": 2, "env_kwargs": {}})
    for ep in bimodal_episodes():
        n = len(ep.actions)
        writer.append_episode({"state": ep.obs}, ep.actions, np.zeros(n), np.zeros(n))
    policy_over = {
        "down_dims": (32, 64),
        "step_embed_dim": 32,
        "pred_horizon": 8,
        "action_horizon": 4,
    }
    train_over = {
        "num_steps": 600,
        "batch_size": 64,
        "lr": 3e-3,
        "warmup_steps": 50,
        "checkpoint_every": 10_000,
        "log_every": 100,
    }
    pc, tc = make_configs("cpu-small", policy_over, train_over)
    return train(demos, root / "run", pc, tc, json_progress=True), demos


def small(**over) -> DistillConfig:
    values = dict(
        teacher_steps=8,
        student_steps=1,
        steps_per_round=250,
        batch_size=64,
        lr=1e-3,
        warmup_steps=20,
        checkpoint_every=100,
        log_every=50,
        device="cpu",
    )
    return DistillConfig(**{**values, **over})


class CountingDenoiser(torch.nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner, self.calls = inner, 0

    def forward(self, *args):
        self.calls += 1
        return self.inner(*args)


def test_one_step_student_keeps_both_modes_and_calls_the_network_once(teacher, tmp_path):
    path, demos = teacher
    final = distill(path, tmp_path / "student", small(), demos=demos, json_progress=True)
    agent = DiffusionPolicyAgent.load(final, device="cpu")
    assert agent.policy.config.num_inference_steps == 1  # its own sampler is the default
    assert agent.policy.config.prediction_type == "v_prediction"
    agent.set_backend("eager")
    counter = agent.policy.denoiser = CountingDenoiser(agent.policy.denoiser)
    chunks = agent.sample(np.zeros((2, 2), np.float32), num_samples=200, seed=0)
    assert counter.calls == 1  # one batched call for all 200 rows, one step
    up, down, between = mode_shares(chunks)
    assert up >= 0.30 and down >= 0.30, (up, down)
    assert between < 0.10, between
    # each round left a usable K-step policy
    for k in (4, 2, 1):
        student = load_policy(tmp_path / "student" / f"steps{k}.safetensors")[0]
        assert student.config.num_inference_steps == k


def test_the_teachers_one_step_without_distillation_lands_between_the_modes(teacher):
    """What distillation fixes: the ε-teacher's own single DDIM step from pure noise."""
    agent = DiffusionPolicyAgent.load(teacher[0], device="cpu")
    agent.policy.config.timestep_spacing = "trailing"
    agent.set_sampler("ddim", 1)
    up, down, between = mode_shares(agent.sample(np.zeros((2, 2), np.float32), 200, seed=0))
    # 0.44-0.6 between the modes, depending on the teacher's float rounding; the 1-step
    # student of the test above: under 0.10
    assert between > 0.3, (up, down, between)


def test_target_is_the_teachers_two_steps_in_one(teacher):
    """A student that outputs the target lands, in one DDIM step, where the teacher's two go."""
    policy = load_policy(teacher[0])[0]
    grids = Grids(policy, torch.device("cpu"))
    steps = grids.round_steps([99, 74, 49, 24], 2)  # (t, t_mid, t_next, merged)
    assert steps.tolist() == [[99, 74, 49, 1], [49, 24, -1, 1]]
    g = torch.Generator().manual_seed(0)
    x_t, cond = torch.randn(2, 8, 1, generator=g), policy.encode(torch.zeros(2, 2, 2))
    v = distillation_target(policy, cond, x_t, steps, grids)
    a, s = grids.coefficients(steps[:, 0])
    a_next, s_next = grids.coefficients(steps[:, 2])
    x0 = a * x_t - s * v
    one_step = a_next * x0 + s_next * (s * x_t + a * v)
    with torch.no_grad():
        mid = ddim_step(policy, cond, x_t, steps[:, 0], steps[:, 1], grids)
        two_steps = ddim_step(policy, cond, mid, steps[:, 1], steps[:, 2], grids)
    torch.testing.assert_close(one_step, two_steps, atol=1e-5, rtol=1e-5)


class StopAt:
    """A progress reporter that interrupts the run at a step, as a kill would."""

    def __init__(self, step):
        self.step = step

    def emit(self, event):
        if isinstance(event, TrainStep) and event.step >= self.step:
            raise KeyboardInterrupt

    def close(self):
        pass


def test_an_interrupted_distillation_resumes_to_the_same_student(teacher, tmp_path):
    path, demos = teacher
    cfg = small(teacher_steps=4, steps_per_round=120, checkpoint_every=40, log_every=10)
    whole = distill(path, tmp_path / "whole", cfg, demos=demos, json_progress=True)
    with pytest.raises(KeyboardInterrupt):  # in round 2, after its checkpoint at 40
        distill(path, tmp_path / "cut", cfg, demos=demos, progress=StopAt(120 + 50))
    with pytest.raises(TrainingError, match="--resume"):
        distill(path, tmp_path / "cut", cfg, demos=demos, json_progress=True)
    resumed = distill(path, tmp_path / "cut", cfg, demos=demos, resume=True, json_progress=True)
    a, b = load_policy(whole)[0].state_dict(), load_policy(resumed)[0].state_dict()
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-6, rtol=1e-5, msg=key)


def test_a_nan_teacher_stops_with_one_message(teacher, tmp_path):
    policy, header = load_policy(teacher[0])
    with torch.no_grad():
        next(policy.denoiser.parameters()).fill_(float("nan"))
    spaces = header.observation_space, header.action_space
    bad = save_policy(tmp_path / "nan.safetensors", policy, *spaces, None, header.training)
    with pytest.raises(TrainingError, match="NaN"):
        distill(
            bad, tmp_path / "out", small(steps_per_round=60), demos=teacher[1], json_progress=True
        )


@pytest.mark.parametrize(
    "over, match",
    [
        ({"teacher_steps": 2, "student_steps": 2}, "fewer than teacher_steps"),
        ({"method": "trajectory", "teacher_steps": 2, "student_steps": 2}, "fewer than teacher"),
        ({"teacher_steps": 4, "student_steps": 0}, "at least 1"),
        ({"lr": 0.0}, "lr must be positive"),
    ],
)
def test_bad_distillation_settings_are_refused(teacher, tmp_path, over, match):
    with pytest.raises(ValueError, match=match):
        distill(teacher[0], tmp_path, small(**over), demos=teacher[1])


def test_missing_training_data_is_named(teacher, tmp_path):
    with pytest.raises(FileNotFoundError, match="--demos"):
        distill(teacher[0], tmp_path, small(), demos=tmp_path / "gone.hdf5")


def test_three_of_four_steps_merges_the_noisiest_pair_and_keeps_the_rest(teacher, tmp_path):
    """A step count that does not halve the teacher's: 4 -> 3 merges (99, 74) into one step and
    keeps 49 and 24; the kept steps' target is the teacher's own single step."""
    from dp_agent.training.targets import merged_grid

    assert DistillConfig(teacher_steps=16, student_steps=3).rounds() == [8, 4, 3]
    assert merged_grid([99, 74, 49, 24], 3) == [99, 49, 24]
    assert merged_grid([99, 74, 49, 24], 2) == [99, 49]
    policy = load_policy(teacher[0])[0]
    grids = Grids(policy, torch.device("cpu"))
    steps = grids.round_steps([99, 74, 49, 24], 3)
    assert steps.tolist() == [[99, 74, 49, 1], [49, 24, 24, 0], [24, -1, -1, 0]]
    g = torch.Generator().manual_seed(0)
    x_t, cond = torch.randn(3, 8, 1, generator=g), policy.encode(torch.zeros(3, 2, 2))
    v = distillation_target(policy, cond, x_t, steps, grids)
    a, s = grids.coefficients(steps[:, 0])
    a_next, s_next = grids.coefficients(steps[:, 2])
    one_step = a_next * (a * x_t - s * v) + s_next * (s * x_t + a * v)
    with torch.no_grad():
        teacher_step = ddim_step(policy, cond, x_t, steps[:, 0], steps[:, 2], grids)
        mid = ddim_step(policy, cond, x_t, steps[:, 0], steps[:, 1], grids)
        two = ddim_step(policy, cond, mid, steps[:, 1], steps[:, 2], grids)
    torch.testing.assert_close(one_step[1:], teacher_step[1:], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(one_step[:1], two[:1], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(one_step[:1], teacher_step[:1], atol=1e-3)

    # the student samples on its own grid, three network calls per chunk
    cfg = small(teacher_steps=4, student_steps=3, steps_per_round=60)
    final = distill(teacher[0], tmp_path / "three", cfg, demos=teacher[1], json_progress=True)
    agent = DiffusionPolicyAgent.load(final, device="cpu")
    assert agent.policy.config.timesteps == (99, 49, 24)
    assert agent.policy.make_sampler().timesteps.tolist() == [99, 49, 24]
    agent.set_backend("eager")
    counter = agent.policy.denoiser = CountingDenoiser(agent.policy.denoiser)
    agent.sample(np.zeros((2, 2), np.float32), num_samples=4, seed=0)
    assert counter.calls == 3


def test_trajectory_targets_follow_the_teachers_own_sampler(teacher):
    """The trajectory method's path is the one the teacher's DDIM sampler takes from the same
    noise, and a student that outputs its targets lands, one step per segment, on that path."""
    from dp_agent.training.targets import teacher_path, trajectory_grid

    policy = load_policy(teacher[0])[0]
    policy.config.timestep_spacing = "trailing"
    obs = torch.zeros(3, 2, 2)
    seen = []
    with torch.no_grad():
        policy.sample(obs, 1, "ddim", 8, torch.Generator().manual_seed(0), on_step=seen.append)
    norm = policy.action_normalizer.normalize
    iterates = [norm(step.sample) for step in seen]  # x at 99, 86, ..., then the chunk
    fine = policy.make_sampler("ddim", 8).timesteps.tolist()
    grid = trajectory_grid(fine, 3)
    assert grid == [99, fine[3], fine[5]]  # trailing 3 steps (99, 66, 32) on the teacher's points
    grids = Grids(policy, torch.device("cpu"))
    cond = policy.encode(obs)
    path = teacher_path(policy, cond, iterates[0], fine, grid, grids)
    expected = [iterates[fine.index(t)] for t in grid] + [iterates[-1]]
    for got, want in zip(path, expected, strict=True):
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    # the v that takes each segment in one DDIM step
    t = torch.tensor(grid).repeat_interleave(3)
    t_next = torch.tensor(grid[1:] + [-1]).repeat_interleave(3)
    x_t, x_next = torch.cat(path[:-1]), torch.cat(path[1:])
    a, s = grids.coefficients(t)
    a_next, s_next = grids.coefficients(t_next)
    x0 = (x_next - (s_next / s) * x_t) / (a_next - s_next * a / s)
    v = (a * x_t - x0) / s
    one_step = a_next * (a * x_t - s * v) + s_next * (s * x_t + a * v)
    torch.testing.assert_close(one_step, x_next, atol=1e-5, rtol=1e-5)


def test_trajectory_student_keeps_both_modes_in_one_step(teacher, tmp_path):
    path, demos = teacher
    cfg = small(method="trajectory", teacher_steps=8, student_steps=1, steps_per_round=400)
    final = distill(path, tmp_path / "traj", cfg, demos=demos, json_progress=True)
    agent = DiffusionPolicyAgent.load(final, device="cpu")
    assert agent.policy.config.num_inference_steps == 1
    agent.set_backend("eager")
    counter = agent.policy.denoiser = CountingDenoiser(agent.policy.denoiser)
    up, down, between = mode_shares(agent.sample(np.zeros((2, 2), np.float32), 200, seed=0))
    assert counter.calls == 1
    assert up >= 0.30 and down >= 0.30, (up, down)
    assert between < 0.10, between


def test_trajectory_student_starts_from_another_student_on_its_own_grid(teacher, tmp_path):
    path, demos = teacher
    two = distill(
        path,
        tmp_path / "two",
        small(teacher_steps=4, student_steps=2, steps_per_round=40),
        demos=demos,
    )
    cfg = small(
        method="trajectory",
        teacher_steps=8,
        student_steps=3,
        grid=(99, 49, 24),
        init_from=str(two),
        steps_per_round=30,
    )
    final = distill(path, tmp_path / "three", cfg, demos=demos, json_progress=True)
    agent = DiffusionPolicyAgent.load(final, device="cpu")
    assert agent.policy.make_sampler().timesteps.tolist() == [99, 49, 24]
    agent.set_backend("eager")
    counter = agent.policy.denoiser = CountingDenoiser(agent.policy.denoiser)
    agent.sample(np.zeros((2, 2), np.float32), num_samples=4, seed=0)
    assert counter.calls == 3
    with pytest.raises(TrainingError, match="trajectory"):  # not the same run
        distill(
            path,
            tmp_path / "three",
            small(teacher_steps=8, student_steps=3, steps_per_round=30),
            demos=demos,
            resume=True,
        )


@pytest.mark.parametrize(
    "over, match",
    [
        ({"grid": (99, 50, 24)}, "points of the teacher's"),
        ({"grid": (86, 49, 24)}, "starting at 99"),
        ({"grid": (99, 24, 49)}, "decreasing"),
    ],
)
def test_bad_trajectory_grids_are_refused(teacher, tmp_path, over, match):
    cfg = small(method="trajectory", teacher_steps=8, student_steps=3, **over)
    with pytest.raises(ValueError, match=match):
        distill(teacher[0], tmp_path / "out", cfg, demos=teacher[1])
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_a_grid_needs_the_trajectory_method_and_a_student_that_acts_otherwise_is_refused(
    teacher, tmp_path
):
    with pytest.raises(ValueError, match="needs method 'trajectory'"):
        distill(teacher[0], tmp_path / "a", small(grid=(99,)), demos=teacher[1])
    other = tmp_path / "other.hdf5"
    writer = DemoWriter(other, {"env_name": "test/Bimodal", "type": 2, "env_kwargs": {}})
    for ep in bimodal_episodes()[:4]:
        n = len(ep.actions)
        writer.append_episode({"state": ep.obs}, ep.actions, np.zeros(n), np.zeros(n))
    pc, tc = make_configs(
        "cpu-small",
        {"down_dims": (16, 32), "step_embed_dim": 16, "pred_horizon": 8, "action_horizon": 2},
        {"num_steps": 2, "batch_size": 8, "checkpoint_every": 10},
    )
    shorter = train(other, tmp_path / "shorter", pc, tc, json_progress=True)
    cfg = small(method="trajectory", init_from=str(shorter), steps_per_round=5)
    with pytest.raises(ValueError, match="field 'action_horizon' is 2, not the teacher's 4"):
        distill(teacher[0], tmp_path / "b", cfg, demos=teacher[1])
    assert not (tmp_path / "b").exists()  # refused before anything was written


def test_a_narrower_network_learns_the_teachers_paths_and_keeps_both_modes(teacher, tmp_path):
    """``init_from`` a policy of another width, trained briefly on the teacher's demos: the
    student keeps that network (under half the teacher's weights) and, in two steps, the
    teacher's two modes. (In one step this network leaves 8-11% of the chunks between the modes,
    seeds 0-2 on an AVX-512 CPU: at the 10% line, where the rounding of the CPU decides; in two,
    0.5-2.5%.)"""
    path, demos = teacher
    pc, tc = make_configs(
        "cpu-small",
        {"down_dims": (16, 32), "step_embed_dim": 16, "pred_horizon": 8, "action_horizon": 4},
        {
            "num_steps": 100,
            "batch_size": 64,
            "lr": 3e-3,
            "warmup_steps": 20,
            "checkpoint_every": 10_000,
            "log_every": 100,
        },
    )
    narrow = train(demos, tmp_path / "narrow", pc, tc, json_progress=True)
    cfg = small(
        method="trajectory",
        teacher_steps=4,
        student_steps=2,
        steps_per_round=400,
        init_from=str(narrow),
    )
    final = distill(path, tmp_path / "student", cfg, demos=demos, json_progress=True)
    agent = DiffusionPolicyAgent.load(final, device="cpu")
    assert agent.policy.config.down_dims == (16, 32)
    assert agent.policy.config.num_inference_steps == 2
    n_teacher = sum(p.numel() for p in load_policy(path)[0].parameters())
    assert sum(p.numel() for p in agent.policy.parameters()) < n_teacher / 2
    up, down, between = mode_shares(agent.sample(np.zeros((2, 2), np.float32), 200, seed=0))
    assert up >= 0.30 and down >= 0.30, (up, down)
    assert between < 0.10, between


def test_a_student_of_another_network_may_keep_its_teachers_steps_and_grid():
    from dp_agent.training.targets import trajectory_grid

    same = DistillConfig(method="trajectory", teacher_steps=3, student_steps=3, init_from="x")
    same.validate()  # a 3-step student moved into another network
    assert trajectory_grid([99, 49, 5], 3) == [99, 49, 5]  # the teacher's own steps by default
    with pytest.raises(ValueError, match="at most teacher_steps"):
        DistillConfig(
            method="trajectory", teacher_steps=3, student_steps=4, init_from="x"
        ).validate()


def test_the_students_header_names_the_data_it_was_distilled_on(teacher, tmp_path):
    """Not the teacher's: ``dp-agent info`` shows it, a resume without --demos goes on with it
    and a resume on other data is refused."""
    from dp_agent.checkpoint import read_header

    subset = tmp_path / "subset.hdf5"
    writer = DemoWriter(subset, {"env_name": "test/Bimodal", "type": 2, "env_kwargs": {}})
    episodes = bimodal_episodes()[:6]
    for ep in episodes:
        n = len(ep.actions)
        writer.append_episode({"state": ep.obs}, ep.actions, np.zeros(n), np.zeros(n))
    final = distill(teacher[0], tmp_path / "s", small(steps_per_round=5), demos=subset)
    training, taught = (read_header(p).training for p in (final, teacher[0]))
    assert training.demos == str(subset) != taught.demos
    assert (training.num_episodes, taught.num_episodes) == (6, len(bimodal_episodes()))
    assert 0 < training.num_samples < taught.num_samples
    with pytest.raises(TrainingError, match=f"pass --demos {subset}"):  # other data: refused
        distill(teacher[0], tmp_path / "s", small(steps_per_round=5), demos=teacher[1], resume=True)
    again = distill(teacher[0], tmp_path / "s", small(steps_per_round=5), resume=True)
    assert read_header(again).training.demos == str(subset)  # no --demos: its own
