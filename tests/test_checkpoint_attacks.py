"""Checkpoints are untrusted: a file never makes the loader import a module, build a network of
the size its header declares, or act with damaged weights; each crafted header gets one
CheckpointError naming the file and the field."""

import json
import sys
import uuid

import numpy as np
import pytest
import torch

from dp_agent.agent import DiffusionPolicyAgent
from dp_agent.checkpoint import CheckpointError, read_header
from dp_agent.cli.main import main
from dp_agent.data.shipped import package_dir
from dp_agent.evaluate import make_env


def rewrite(path, change=None, *, raw=None, tensors=None, digest=True):
    """Rewrite a checkpoint in place: its header dict by ``change``, or its header text by
    ``raw``; its tensors by ``tensors(dict)``; without its digest (as files written before
    digests, or by someone who left it out) unless ``digest``."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    header = json.loads(meta["header"])
    if change is not None:
        change(header)
    weights = load_file(str(path))
    if tensors is not None:
        tensors(weights)
    text = raw if raw is not None else json.dumps(header)
    meta = {k: v for k, v in meta.items() if digest or k != "digest"}
    save_file(weights, str(path), metadata={**meta, "header": text})
    return path


@pytest.fixture
def probe(tmp_path, monkeypatch):
    """A module on sys.path that leaves a mark when imported and registers a Point env:
    -> (module name, the env id it registers, the mark's path)."""
    name = f"dp_probe_{uuid.uuid4().hex[:8]}"
    mark = tmp_path / "imported"
    env_id = f"{name}/Point-v0"
    (tmp_path / f"{name}.py").write_text(
        "import pathlib\nimport gymnasium as gym\n"
        f"pathlib.Path({str(mark)!r}).write_text('imported')\n"
        f"gym.register({env_id!r}, entry_point='support:PointEnv')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name, env_id, mark
    sys.modules.pop(name, None)


# ---- a checkpoint never imports code -----------------------------------------------------------


def test_a_checkpoint_whose_env_id_names_a_module_is_refused_naming_file_and_field(
    tiny_agent, tmp_path, probe
):
    name, _, mark = probe
    path = tiny_agent.save(tmp_path / "a.safetensors")
    rewrite(path, lambda h: h.update(env_id=f"{name}:Point-v0"))
    with pytest.raises(CheckpointError, match=r"a\.safetensors: header field 'env_id'"):
        DiffusionPolicyAgent.load(path, device="cpu")
    assert not mark.exists() and name not in sys.modules


def test_dp_agent_eval_never_imports_the_module_a_checkpoint_names(
    tiny_agent, tmp_path, probe, capsys
):
    name, _, mark = probe
    path = tiny_agent.save(tmp_path / "a.safetensors")
    rewrite(path, lambda h: h.update(env_id=f"{name}:Point-v0"))
    args = ["eval", str(path), "--episodes", "1", "--n-envs", "1", "--in-process"]
    assert main([*args, "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'env_id'" in err[0] and "a.safetensors" in err[0]
    assert not mark.exists() and name not in sys.modules


def test_an_agents_make_env_refuses_the_module_form_of_an_env_id(tiny_agent, probe):
    name, _, mark = probe
    tiny_agent.env_id = f"{name}:Point-v0"
    with pytest.raises(ValueError, match="not a registered Gymnasium id"):
        tiny_agent.make_env()
    with pytest.raises(ValueError, match="--env-module"):
        make_env(f"{name}:Point-v0", {})
    assert not mark.exists() and name not in sys.modules


def test_eval_env_module_imports_the_module_the_user_names(tiny_agent, tmp_path, probe, capsys):
    name, env_id, mark = probe
    tiny_agent.env_id = env_id  # registered only once the module is imported
    path = tiny_agent.save(tmp_path / "a.safetensors")
    args = ["eval", str(path), "--episodes", "1", "--n-envs", "1", "--max-episode-steps", "3"]
    assert main([*args, "--in-process", "--device", "cpu", "--env-module", name]) == 0
    assert mark.exists() and "episodes" in capsys.readouterr().out


# ---- nothing allocated from a declared size ----------------------------------------------------


@pytest.fixture
def only_meta_networks(monkeypatch):
    """Fail (instead of allocating) if a network is built anywhere but on the meta device."""
    from dp_agent.policy import DiffusionPolicy

    init = DiffusionPolicy.__init__

    def guarded(self, config):
        if torch.empty(0).device.type != "meta":
            raise AssertionError(f"a real network was built for {list(config.down_dims)}")
        init(self, config)

    monkeypatch.setattr(DiffusionPolicy, "__init__", guarded)


def test_a_header_declaring_a_huge_network_is_refused_before_anything_is_allocated(
    tiny_agent, tmp_path, only_meta_networks
):
    path = tiny_agent.save(tmp_path / "big.safetensors")
    rewrite(path, lambda h: h["policy_config"].update(down_dims=[4096, 8192, 16384]))
    with pytest.raises(CheckpointError, match=r"big\.safetensors: .*tensor 'model\.denoiser"):
        DiffusionPolicyAgent.load(path, device="cpu")


def test_a_config_that_differs_from_the_tensors_names_the_first_tensor_that_differs(
    tiny_agent, tmp_path, only_meta_networks
):
    path = tiny_agent.save(tmp_path / "b.safetensors")
    rewrite(path, lambda h: h["policy_config"].update(obs_feature_dim=9))
    with pytest.raises(CheckpointError, match=r"tensor 'model\.obs_encoder\..*should have shape"):
        DiffusionPolicyAgent.load(path, device="cpu")


def _nested(depth):
    return "[" * depth + "]" * depth


CRAFTED = {
    "n_groups=0": lambda h: h["policy_config"].update(n_groups=0),
    "down_dims=abc": lambda h: h["policy_config"].update(down_dims="abc"),
    "down_dims=[]": lambda h: h["policy_config"].update(down_dims=[]),
    "kernel_size=1e30": lambda h: h["policy_config"].update(kernel_size=10**30),
    "obs_horizon=2.5": lambda h: h["policy_config"].update(obs_horizon=2.5),
    "dropout='x'": lambda h: h["policy_config"].update(dropout="x"),
    "no action_space.low": lambda h: h["action_space"].pop("low"),
    "env_kwargs=[1,2]": lambda h: h.update(env_kwargs=[1, 2]),
    "env_id=7": lambda h: h.update(env_id=7),
    "training.seconds='x'": lambda h: h["training"].update(seconds="x"),
    "planner.state_dims=3": lambda h: h.update(
        planner={
            "state_dims": 3,
            "action_dims": [4, 6],
            "goal_dim": 2,
            "position_dims": [0, 1],
            "velocity_dims": [],
            "state_key": None,
            "goal_key": None,
            "config": {},
        }
    ),
    "image of 2**40": lambda h: h.update(
        observation_space={
            "type": "Box",
            "shape": [2**20, 2**20],
            "low": 0,
            "high": 255,
            "dtype": "uint8",
        }
    ),
    "object dtype": lambda h: h["action_space"].update(dtype="object"),
    "value width 2**40": lambda h: h.update(value={"dim": 2, "width": 2**40, "step_embed_dim": 8}),
}


@pytest.mark.parametrize("edit", sorted(CRAFTED))
def test_a_crafted_header_gives_one_checkpoint_error_naming_the_file(
    edit, tiny_agent, tmp_path, only_meta_networks, capsys
):
    path = rewrite(tiny_agent.save(tmp_path / "c.safetensors"), CRAFTED[edit])
    with pytest.raises(CheckpointError, match=r"c\.safetensors"):
        DiffusionPolicyAgent.load(path, device="cpu")
    assert main(["info", str(path)]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "text",
    [
        '{"policy_config": {"obs_horizon": ' + "9" * 5001 + "}}",
        '{"env_kwargs": {"a": ' + _nested(100_000) + "}}",
        '{"env_kwargs": {"a": ' + _nested(900) + "}}",
    ],
    ids=["a 5001-digit integer", "JSON nested 100000 deep", "JSON nested 900 deep"],
)
def test_an_unparsable_header_gives_a_checkpoint_error(tiny_agent, tmp_path, text):
    path = rewrite(tiny_agent.save(tmp_path / "d.safetensors"), raw=text)
    with pytest.raises(CheckpointError, match=r"d\.safetensors"):
        DiffusionPolicyAgent.load(path, device="cpu")


# ---- integrity ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "tensor", ["model.action_normalizer.min", "model.obs_normalizer.max", "model.denoiser"]
)
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_normalisers_or_weights_are_refused_by_name(tensor, value, tiny_agent, tmp_path):
    def damage(weights):
        name = next(k for k in weights if k.startswith(tensor))
        weights[name] = weights[name].clone()
        weights[name].view(-1)[0] = value

    path = rewrite(tiny_agent.save(tmp_path / "e.safetensors"), tensors=damage, digest=False)
    with pytest.raises(CheckpointError, match=rf"e\.safetensors: tensor '{tensor}.*NaN or inf"):
        DiffusionPolicyAgent.load(path, device="cpu")


def test_a_damaged_weight_fails_the_digest_recorded_at_save(tiny_agent, tmp_path):
    path = tiny_agent.save(tmp_path / "f.safetensors")
    assert read_header(path) is not None

    def damage(weights):
        name = next(k for k in weights if k.startswith("model.denoiser") and weights[k].ndim > 1)
        weights[name] = weights[name] * 1.001  # finite, same shape: only a digest can tell

    rewrite(path, tensors=damage)
    with pytest.raises(CheckpointError, match=r"f\.safetensors: .*digest"):
        DiffusionPolicyAgent.load(path, device="cpu")


def test_a_checkpoint_without_a_digest_still_loads(tiny_agent, tmp_path):
    path = rewrite(tiny_agent.save(tmp_path / "g.safetensors"), digest=False)
    agent = DiffusionPolicyAgent.load(path, device="cpu")
    assert agent.predict(np.zeros(3, np.float32))[0].shape == (2,)


def test_every_shipped_checkpoint_passes_the_load_checks():
    from dp_agent.checkpoint import load_policy

    for path in sorted((package_dir() / "pretrained").glob("*.safetensors")):
        policy, _ = load_policy(path)
        assert all(torch.isfinite(v).all() for v in policy.state_dict().values())
