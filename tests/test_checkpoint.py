"""Checkpoints: exact round trips, no pickle, clear errors for files that do not fit."""

import json
import pickle
import struct

import gymnasium as gym
import numpy as np
import pytest
import torch

from dp_agent.agent import DiffusionPolicyAgent
from dp_agent.checkpoint import CheckpointError
from dp_agent.data.shipped import package_dir


def test_save_load_predict_gives_identical_actions(tiny_agent, tmp_path):
    path = tiny_agent.save(tmp_path / "agent.safetensors")
    obs = np.random.default_rng(0).uniform(-0.5, 0.5, (3, 3)).astype(np.float32)
    loaded = DiffusionPolicyAgent.load(path, device="cpu", seed=7)
    fresh = DiffusionPolicyAgent(
        tiny_agent.policy,
        tiny_agent.observation_space,
        tiny_agent.action_space,
        device="cpu",
        seed=7,
    )
    for step in range(6):
        a, _ = fresh.predict(obs + step * 0.01)
        b, _ = loaded.predict(obs + step * 0.01)
        np.testing.assert_array_equal(a, b)
    assert loaded.config == tiny_agent.config and loaded.env_id == "test/Point"


def test_checkpoint_is_plain_safetensors_and_loads_with_pickle_disabled(
    tiny_agent, tmp_path, monkeypatch
):
    path = tiny_agent.save(tmp_path / "agent.safetensors")
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"]
    assert 8 + n + max(ends) == len(raw)  # nothing but the JSON header and raw tensor bytes

    def refuse(*a, **k):
        raise AssertionError("pickle used while loading a checkpoint")

    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    monkeypatch.setattr(torch, "load", refuse)  # torch's own (weights-only) unpickler too
    DiffusionPolicyAgent.load(path, device="cpu")


def test_loading_for_an_env_of_another_shape_fails_clearly(tiny_agent, tmp_path):
    path = tiny_agent.save(tmp_path / "agent.safetensors")

    class Other(gym.Env):
        observation_space = gym.spaces.Box(-1, 1, (7,), np.float32)
        action_space = gym.spaces.Box(-1, 1, (2,), np.float32)

    with pytest.raises(CheckpointError, match=r"agent.safetensors: field 'observation_space'"):
        DiffusionPolicyAgent.load(path, Other(), device="cpu")


def test_garbage_and_foreign_files_fail_with_the_file_name(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 100)
    with pytest.raises(CheckpointError, match="bad.safetensors: not a safetensors checkpoint"):
        DiffusionPolicyAgent.load(bad, device="cpu")
    import torch
    from safetensors.torch import save_file

    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(CheckpointError, match="foreign.safetensors: metadata field 'format'"):
        DiffusionPolicyAgent.load(foreign, device="cpu")
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        DiffusionPolicyAgent.load(tmp_path / "missing.safetensors", device="cpu")


def test_env_kwargs_travel_with_the_checkpoint(tmp_path):
    from support import tiny_policy

    import dp_agent  # noqa: F401  (registers the tasks)

    env = gym.make("dp_agent/PushT-v0", obs_type="keypoints")
    agent = DiffusionPolicyAgent(
        tiny_policy(obs_dim=18),
        env.observation_space,
        env.action_space,
        "dp_agent/PushT-v0",
        device="cpu",
        env_kwargs={"obs_type": "keypoints"},
    )
    loaded = DiffusionPolicyAgent.load(agent.save(tmp_path / "kp.safetensors"), device="cpu")
    assert loaded.env_kwargs == {"obs_type": "keypoints"}
    made = loaded.make_env()
    assert made.observation_space.shape == (18,)
    obs, _ = made.reset(seed=0)
    action, _ = loaded.predict(obs)
    assert action.shape == (2,)


def test_export_writes_half_precision_weights_with_a_default_sampler(tiny_agent, tmp_path):
    from dp_agent.cli.main import main

    src = tiny_agent.save(tmp_path / "full.safetensors")
    out = tmp_path / "small.safetensors"
    assert (
        main(["export", str(src), str(out), "--half", "--sampler", "dpmsolver++", "--steps", "5"])
        == 0
    )
    small = DiffusionPolicyAgent.load(out, device="cpu")
    assert (small.sampler, small.num_inference_steps) == ("dpmsolver++", 5)
    assert out.stat().st_size < 0.6 * src.stat().st_size
    for (name, a), b in zip(
        tiny_agent.policy.state_dict().items(), small.policy.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(b, a, rtol=1e-3, atol=1e-3, msg=name)


def test_int8_export_is_a_quarter_of_fp32_and_predicts_what_the_full_weights_predict(
    tiny_agent, tmp_path
):
    from safetensors import safe_open

    from dp_agent.cli.main import main

    src = tiny_agent.save(tmp_path / "full.safetensors")
    out = tmp_path / "int8.safetensors"
    assert main(["export", str(src), str(out), "--int8"]) == 0
    with safe_open(str(out), framework="pt") as f:
        dtypes = {k: f.get_slice(k).get_dtype() for k in f.keys()}
    assert "I8" in dtypes.values()
    assert all(dtypes[k] == "F32" for k in dtypes if "normalizer" in k)  # the units stay exact
    weights = sum(v.numel() * 4 for v in tiny_agent.policy.state_dict().values())
    assert out.stat().st_size < 0.35 * weights + 20_000  # + the JSON header
    from dp_agent.checkpoint import stored_dtypes

    shares = stored_dtypes(out)
    assert shares["I8"] > 0.9 and abs(sum(shares.values()) - 1) < 1e-9
    assert stored_dtypes(src) == {"F32": 1.0}

    small = DiffusionPolicyAgent.load(out, device="cpu", seed=3)
    full = tiny_agent.policy.state_dict()
    for name, b in small.policy.state_dict().items():
        a = full[name]
        assert b.dtype == a.dtype == torch.float32, name
        if a.ndim >= 2 and a.numel() >= 256:  # int8 rows: off by at most half a step of the row
            step = a.reshape(a.shape[0], -1).abs().amax(1) / 127
            err = (b - a).reshape(a.shape[0], -1).abs().amax(1)
            assert torch.all(err <= 0.5001 * step + 1e-12), name
    # one denoiser call on the same input: within 3% (relative L2) of the full weights' output
    policy, qpolicy = tiny_agent.policy, small.policy
    g = torch.Generator().manual_seed(0)
    c = policy.config
    x = torch.randn(4, c.pred_horizon, c.action_dim, generator=g)
    obs = torch.rand(4, c.obs_horizon, c.obs_dim, generator=g) - 0.5
    t = torch.tensor([0, 10, 50, 99])
    with torch.no_grad():
        ref = policy.denoiser(x, t, policy.encode(obs))
        got = qpolicy.denoiser(x, t, qpolicy.encode(obs))
    assert (got - ref).norm() < 0.03 * ref.norm()  # the shipped PushT U-Net: 0.2%


def test_an_int8_scale_without_its_weights_is_named_in_the_error(tiny_agent, tmp_path):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    path = tiny_agent.save(tmp_path / "q.safetensors", int8=True)
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    tensors = load_file(str(path))
    name = next(k for k in tensors if k.startswith("int8_scale."))
    del tensors[name[len("int8_scale.") :]]
    save_file(tensors, str(path), metadata=meta)
    with pytest.raises(CheckpointError, match=r"q\.safetensors: tensor 'int8_scale\..*missing"):
        DiffusionPolicyAgent.load(path, device="cpu")


def _rewrite_header(path, change):
    """Rewrite a checkpoint's JSON header in place with ``change(header_dict)``."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    header = json.loads(meta["header"])
    change(header)
    save_file(load_file(str(path)), str(path), metadata={**meta, "header": json.dumps(header)})


@pytest.mark.parametrize(
    "name", sorted(p.name for p in (package_dir() / "pretrained").glob("*.safetensors"))
)
def test_every_shipped_header_reads_typed_and_writes_back_what_it_held(name):
    """Headers written by earlier versions (a planner's ``conditioned_entries``, students'
    distillation sections) read into ``Header``; writing it back keeps every field they hold
    (and adds the newer fields' defaults)."""
    from safetensors import safe_open

    from dp_agent.checkpoint import Header, read_header

    path = package_dir() / "pretrained" / name
    with safe_open(str(path), framework="pt") as f:
        raw = json.loads(f.metadata()["header"])
    header = read_header(path)
    assert isinstance(header, Header) and isinstance(header.observation_space, gym.Space)
    assert (header.planner is not None) == name.startswith("maze2d")
    assert (header.training.distill is not None) == ("distilled" in name)
    again = json.loads(json.dumps(header.to_dict()))

    def held(old, new, where="header"):
        if isinstance(old, dict):
            for key, value in old.items():
                held(value, new.get(key), f"{where}.{key}")
        else:
            assert new == old, where

    held(raw, again)


def test_a_header_with_an_unknown_or_missing_field_is_refused_by_name(tiny_agent, tmp_path):
    from dp_agent.checkpoint import read_header

    path = tiny_agent.save(tmp_path / "a.safetensors")
    _rewrite_header(path, lambda h: h["training"].update(stepz=3))
    with pytest.raises(CheckpointError, match=r"a.safetensors: header field 'training.stepz'"):
        read_header(path)
    _rewrite_header(path, lambda h: (h["training"].pop("stepz"), h.pop("action_space")))
    with pytest.raises(CheckpointError, match=r"header field 'action_space' is missing"):
        read_header(path)


def test_loading_checks_the_config_against_the_tensors(tiny_agent, tmp_path):
    path = tiny_agent.save(tmp_path / "b.safetensors")
    _rewrite_header(path, lambda h: h["policy_config"].update(down_dims=[16, 64]))
    with pytest.raises(CheckpointError, match=r"b.safetensors: field 'policy_config' or the"):
        DiffusionPolicyAgent.load(path, device="cpu")
