"""Guidance: the gradient rule checked against its closed form on Gaussian data, the built-in
guides, best-of-N, and guides on the ordinary action-chunk policy."""

import math

import numpy as np
import pytest
import torch
from support import PointEnv, tiny_policy

from dp_agent.diffusion.samplers import make_sampler
from dp_agent.fast import accelerate
from dp_agent.guides import GoalDistance, Guidance, KeepOut, ValueNet, best_of

MEAN, STD = 0.2, 0.5  # the Gaussian data, per entry, in the policy's normalised units
H, D = 4, 2


class ExactGaussianDenoiser(torch.nn.Module):
    """E[ε | x_t] for x0 ~ N(MEAN, STD²) per entry: x_t ~ N(a MEAN, a² STD² + b²)."""

    def __init__(self, schedule):
        super().__init__()
        self.abar = schedule.alphas_cumprod_f64
        self.unused = torch.nn.Parameter(torch.zeros(1))  # backends read the device from it

    def forward(self, x, k, cond):
        abar = self.abar[k].to(x.dtype).view(-1, 1, 1)
        a, b = abar.sqrt(), (1 - abar).sqrt()
        return b * (x - a * MEAN) / (a * a * STD**2 + b * b)


def gaussian_policy():
    """A DiffusionPolicy over (H, D) chunks whose denoiser is the exact one; identity
    normaliser (the default statistics [-1, 1]), no clipping."""
    policy = tiny_policy(
        obs_dim=1,
        action_dim=D,
        pred_horizon=H,
        obs_horizon=1,
        action_horizon=1,
        down_dims=(8,),
        clip_sample=False,
        num_inference_steps=10,
    )
    policy.action_normalizer.min.fill_(-1.0)
    policy.action_normalizer.max.fill_(1.0)
    policy.denoiser = ExactGaussianDenoiser(policy.schedule)
    accelerate(policy, "eager")
    return policy


class Linear:
    """J(τ) = Σ w·τ: its gradient is w wherever it is taken."""

    def __init__(self, w):
        self.w = w

    def __call__(self, traj, timestep=0):
        return (traj * self.w).flatten(1).sum(1)


def predicted_shift(sampler, alpha, n_steps, t_stopgrad):
    """The guided samples' shift, as a multiple c of w, through the samplers' affine steps.

    With Gaussian data x̂0 and ε̂ are affine in x_t: ∂x̂0/∂x = p = a s²/(a²s²+b²), ∂ε̂/∂x = q =
    b/(a²s²+b²). A shift d = c w of x_t moves the next iterate by (∂x'/∂x) d; guidance then adds
    n α Σ_i w. DPM-Solver++ also carries the shift e of its previous x̂0."""
    abar = [sampler._alpha_bar_at(int(t)) for t in sampler.timesteps] + [1.0]
    k = sampler.num_steps
    if sampler.name == "dpmsolver++":
        lam = [0.5 * math.log(a / (1 - a)) for a in abar[:k]]
        h = [lam[i + 1] - lam[i] for i in range(k - 1)]
    c = e = 0.0
    for i in range(k):
        a, a2 = abar[i], abar[i + 1]
        sa, sb = math.sqrt(a), math.sqrt(1 - a)
        p, q = sa * STD**2 / (a * STD**2 + 1 - a), sb / (a * STD**2 + 1 - a)
        if sampler.name == "ddpm":
            beta = 1 - a / a2
            c = (math.sqrt(a2) * beta / (1 - a) * p + math.sqrt(1 - beta) * (1 - a2) / (1 - a)) * c
        elif sampler.name == "ddim":
            c = (math.sqrt(a2) * p + math.sqrt(1 - a2) * q) * c
        elif i == k - 1:  # DPM-Solver++'s final step returns x̂0
            c, e = p * c, p * c
        else:
            r = 0.5 * h[i] / h[i - 1] if i > 0 else 0.0
            cx, cd = math.sqrt(1 - a2) / sb, math.sqrt(a2) * -math.expm1(-h[i])
            c, e = cx * c + cd * ((1 + r) * p * c - r * e), p * c
        if i < k - t_stopgrad:
            c += n_steps * alpha * sampler.step_variance(i)
    return c


@pytest.mark.parametrize("name, steps", [("ddpm", 20), ("ddim", 10), ("dpmsolver++", 8)])
def test_guided_mean_moves_by_the_shift_predicted_through_the_linear_steps(name, steps):
    policy = gaussian_policy()
    w = torch.tensor([[1.0, -0.5]] * H)  # (H, D)
    obs = torch.zeros(1, 1, 1)
    guidance = Guidance([Linear(w)], scale=0.3, n_steps=2, t_stopgrad=1)

    def run(g):
        gen = torch.Generator().manual_seed(0)
        return policy.sample(obs, 4000, name, steps, gen, guidance=g).double()

    plain, guided = run(None), run(guidance)
    c = predicted_shift(policy.make_sampler(name, steps), 0.3, 2, 1)
    assert c > 0.05  # a shift worth measuring
    # the steps are affine, so the shift is the same for every sample: float32 tolerance
    shift = guided - plain  # (N, H, D)
    torch.testing.assert_close(shift.mean(0), c * w.double(), atol=2e-4, rtol=1e-3)
    assert (shift - c * w.double()).abs().max() < 1e-3
    # and the guided mean is the data's mean moved by that shift (sampling error, bias of the
    # few-step samplers: 0.05)
    assert (guided.mean(0) - (MEAN + c * w.double())).abs().max() < 0.05


def test_no_guidance_in_the_last_t_stopgrad_steps():
    policy = gaussian_policy()
    w = torch.ones(H, D)
    obs = torch.zeros(1, 1, 1)
    s = policy.make_sampler("ddim", 10)
    outs = [
        policy.sample(
            obs,
            8,
            "ddim",
            10,
            torch.Generator().manual_seed(0),
            guidance=Guidance([Linear(w)], 0.3, 1, t_stopgrad=stop),
        )
        for stop in (10, 9)
    ]
    plain = policy.sample(obs, 8, "ddim", 10, torch.Generator().manual_seed(0))
    torch.testing.assert_close(outs[0], plain)  # every step stopped
    c = predicted_shift(s, 0.3, 1, 9)  # only the first step's push, carried to the end
    torch.testing.assert_close((outs[1] - plain).mean(0), c * w, atol=1e-4, rtol=1e-3)


def test_step_variance_is_ddpm_posterior_variance_between_visited_timesteps():
    from dp_agent.diffusion.samplers import NoiseSchedule

    schedule = NoiseSchedule(100)
    ddim, ddpm = make_sampler("ddim", schedule, 10), make_sampler("ddpm", schedule, 10)
    abar = schedule.alphas_cumprod_f64
    t, t2 = int(ddim.timesteps[3]), int(ddim.timesteps[4])
    expected = (1 - abar[t2]) / (1 - abar[t]) * (1 - abar[t] / abar[t2])
    assert ddim.step_variance(3) == pytest.approx(float(expected))
    assert ddpm.step_variance(3) == pytest.approx(float(expected))  # fixed_small: β̃
    assert ddpm.step_variance(9) == 0.0  # no noise on the step from t = 0


def test_conditions_are_reapplied_after_every_gradient_step():
    policy = gaussian_policy()
    obs = torch.zeros(1, 1, 1)
    known = torch.tensor([0.7, -0.3])
    guidance = Guidance([Linear(torch.ones(H, D))], scale=5.0, n_steps=3, t_stopgrad=0)
    seen = []

    def record(step):
        seen.append(step.sample[:, 0].clone())

    out = policy.sample(
        obs,
        16,
        "ddim",
        10,
        torch.Generator().manual_seed(0),
        record,
        conditions={0: known},
        guidance=guidance,
    )
    torch.testing.assert_close(out[:, 0], known.expand(16, -1))
    assert out[:, 1:].mean() > MEAN + 0.1  # the free entries were pushed


def test_keep_out_is_zero_outside_and_pushes_positions_out():
    keep = KeepOut(circles=[(0.0, 0.0, 0.5)], boxes=[(2.0, 2.0, 3.0, 3.0)])
    traj = torch.tensor([[[1.0, 1.0], [0.1, 0.0]], [[2.5, 2.2], [5.0, 5.0]], [[1, 1], [4, 0]]])
    j = keep(traj)
    assert j[2] == 0.0 and j[0] < 0 and j[1] < 0
    assert keep.entered(traj).tolist() == [True, True, False]
    traj.requires_grad_(True)
    (grad,) = torch.autograd.grad(keep(traj).sum(), traj)
    assert grad[0, 1, 0] > 0  # J rises moving +x, out of the circle from (0.1, 0)
    assert grad[1, 0, 1] < 0  # out of the box through its nearest edge, y = 2
    with pytest.raises(ValueError, match="radii"):
        KeepOut(circles=[(0, 0, -1)])


def test_goal_distance_prefers_plans_that_arrive_sooner():
    goal = torch.tensor([1.0, 0.0])
    t = torch.linspace(0, 1, 8)[:, None]
    early = torch.cat([t.clamp(max=0.5) * 2, 0 * t], 1)  # there by half-way
    late = torch.cat([t, 0 * t], 1)
    j = GoalDistance(goal)(torch.stack([late, early]))
    assert j[1] > j[0]


def test_best_of_keeps_each_observations_highest_objective():
    traj = torch.zeros(6, 3, 2)
    traj[:, :, 0] = torch.tensor([0.0, 2.0, 1.0, 5.0, 4.0, 3.0])[:, None]
    idx, j = best_of(traj, [Linear(torch.ones(3, 2))], num_samples=3)
    assert idx.tolist() == [1, 3]
    assert j.shape == (6,)


def test_keep_out_guides_the_action_chunks_of_the_ordinary_policy():
    """The policy agent samples position chunks; a KeepOut steers them (predict-time too)."""
    from dp_agent.agent import DiffusionPolicyAgent

    policy = gaussian_policy()
    env = PointEnv()
    box = __import__("gymnasium").spaces.Box(-1.0, 1.0, (1,), np.float32)
    agent = DiffusionPolicyAgent(policy, box, env.action_space, device="cpu")
    hist = np.zeros((1, 1), np.float32)
    keep = KeepOut(circles=[(MEAN, MEAN, 0.4)])
    plain = agent.sample(hist, 400, seed=0)
    guided = agent.sample(hist, 400, seed=0, guides=[keep], guide_scale=1000.0)
    share = lambda c: keep.entered(torch.as_tensor(c)).float().mean().item()  # noqa: E731
    assert share(plain) > 0.5 and share(guided) < 0.1
    agent.set_guidance([keep], scale=20.0, t_stopgrad=0)
    assert agent.guidance is not None
    agent.predict(np.zeros(1, np.float32))  # predict-time guidance runs
    agent.set_guidance()
    assert agent.guidance is None


def test_value_net_maps_noisy_trajectories_to_one_number_each():
    net = ValueNet(dim=3, width=8, step_embed_dim=8)
    out = net(torch.zeros(5, 16, 3), torch.arange(5))
    assert out.shape == (5,)


def test_predict_keeps_the_best_of_n_chunks_by_the_guides_objective():
    from dp_agent.agent import DiffusionPolicyAgent

    box = __import__("gymnasium").spaces.Box(-1.0, 1.0, (1,), np.float32)
    agent = DiffusionPolicyAgent(gaussian_policy(), box, PointEnv().action_space, device="cpu")
    keep = KeepOut(circles=[(MEAN, MEAN, 0.3)])  # half the chunks enter it
    obs = np.zeros((64, 1), np.float32)

    def entered_share():
        agent.reset()
        agent.predict(obs, deterministic=True)
        plans = np.stack([agent.last_plan(i) for i in range(64)])
        return keep.entered(torch.as_tensor(plans)).float().mean().item()

    plain = entered_share()
    agent.set_guidance([keep], scale=0.0, best_of=8)  # no gradient: selection alone
    assert agent.num_chunks_sampled == 1 and plain > 0.3
    assert entered_share() < 0.1  # all 8 enter: about 0.5^8
