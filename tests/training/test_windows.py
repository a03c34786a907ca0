"""Training windows: padding at the episode edges and agreement with a per-sample reference."""

import numpy as np
import pytest
import torch

from dp_agent.normalizer import MinMaxNormalizer
from dp_agent.training.windows import EpisodeArrays, WindowDataset, window_indices


def reference_windows(lengths, to, tp, ta):
    """The obvious per-sample loop the vectorised code replaces."""
    out, offset = [], 0
    for n in lengths:
        for start in range(-(to - 1), n - tp + (ta - 1) + 1):
            out.append([offset + min(max(start + j, 0), n - 1) for j in range(tp)])
        offset += n
    return np.array(out)


@pytest.mark.parametrize("to,tp,ta", [(2, 16, 8), (1, 4, 1), (3, 8, 4)])
def test_window_indices_match_the_per_sample_loop(to, tp, ta):
    lengths = [20, 9, 16, 33]
    np.testing.assert_array_equal(
        window_indices(lengths, to, tp, ta), reference_windows(lengths, to, tp, ta)
    )


def test_first_window_repeats_first_frame_and_last_window_repeats_last_frame():
    idx = window_indices([20], obs_horizon=2, pred_horizon=16, action_horizon=8)
    assert idx[0, 0] == idx[0, 1] == 0 and idx[0, 2] == 1  # To-1 = 1 repeat before
    assert (idx[-1, -8:] == 19).all() and idx[-1, -9] == 18  # Ta-1 = 7 repeats after
    assert len(idx) == 20 - 16 + 1 + 2 - 1 + 8 - 1


def test_episodes_too_short_for_any_window_give_a_clear_error():
    ep = EpisodeArrays(np.zeros((3, 2), np.float32), np.zeros((3, 1), np.float32))
    with pytest.raises(ValueError, match="too short"):
        WindowDataset([ep], obs_horizon=1, pred_horizon=16, action_horizon=1)


def test_batches_gather_observations_and_actions_of_the_window():
    eps = [
        EpisodeArrays(
            np.arange(n, dtype=np.float32)[:, None] + 100 * k,
            np.arange(n, dtype=np.float32)[:, None] + 100 * k,
        )
        for k, n in enumerate([12, 15])
    ]
    ds = WindowDataset(eps, obs_horizon=2, pred_horizon=8, action_horizon=4)
    obs, act = ds.batch(torch.arange(len(ds)))
    assert obs.shape == (len(ds), 2, 1) and act.shape == (len(ds), 8, 1)
    # the observations are the first To frames of the action window, frame by frame
    torch.testing.assert_close(obs, act[:, :2])
    # no window mixes two episodes
    assert ((act // 100).amax(dim=1) == (act // 100).amin(dim=1)).all()


def test_normalizer_maps_data_range_to_unit_interval_and_back():
    rng = np.random.default_rng(0)
    data = rng.uniform([0, -5, 3], [512, 5, 3], (1000, 3)).astype(np.float32)
    norm = MinMaxNormalizer(3).fit(data)
    y = norm.normalize(torch.as_tensor(data))
    assert torch.allclose(y[:, :2].amin(0), torch.tensor([-1.0, -1.0]))
    assert torch.allclose(y[:, :2].amax(0), torch.tensor([1.0, 1.0]))
    assert torch.all(y[:, 2] == 0)  # a constant dimension maps to 0, not to NaN
    torch.testing.assert_close(norm.unnormalize(y), torch.as_tensor(data), rtol=1e-5, atol=1e-3)


def test_normalizer_refuses_non_finite_data():
    with pytest.raises(ValueError, match="NaN or inf"):
        MinMaxNormalizer(1).fit(np.array([[0.0], [np.nan]]))
