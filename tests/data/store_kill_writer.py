"""Helper for test_store_kill.py (not a test): appends (or deletes, or compacts) episodes in a loop
until it is killed, printing each name once the call that saved it has returned.

    python store_kill_writer.py FILE FIRST_SEED append|churn|compact|images|images-compact

``churn`` deletes the oldest episode after each append; the ``compact`` modes fold the journal into
the file after every second append; the ``images`` modes write 96x96x3 image episodes.
"""

from __future__ import annotations

import sys

import numpy as np

from dp_agent.data import DemoReader, DemoWriter

ENV_ARGS = {"env_name": "dp_agent/PushT-v0", "env_kwargs": {"obs_type": "state"}}
MODES = ("append", "churn", "compact", "images", "images-compact")


def episode_arrays(
    seed: int, images: bool = False
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
    """An episode that is a pure function of its seed: obs {"state": (T, 5)} (PushT-sized, T of
    100 to 199) or, with ``images``, also {"image": (T, 96, 96, 3) uint8 noise} (T of 10 to 29);
    actions (T, 2), rewards (T,), dones (T,)."""
    rng = np.random.default_rng(seed)
    T = 10 + seed % 20 if images else 100 + seed % 100
    obs = {"state": rng.uniform(0, 512, size=(T, 5)).astype(np.float32)}
    if images:
        obs["image"] = rng.integers(0, 256, size=(T, 96, 96, 3), dtype=np.uint8)
    actions = rng.uniform(0, 512, size=(T, 2)).astype(np.float32)
    rewards = rng.random(T).astype(np.float32)
    dones = np.zeros(T, bool)
    dones[-1] = True
    return obs, actions, rewards, dones


def main() -> None:
    path, seed, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    assert mode in MODES, mode
    writer = DemoWriter(path, ENV_ARGS)
    print("ready", flush=True)
    while True:
        arrays = episode_arrays(seed, images=mode.startswith("images"))
        name = writer.append_episode(*arrays, attrs={"seed": seed})
        print(f"saved {name} {seed}", flush=True)
        seed += 1
        if mode == "churn":
            with DemoReader(path) as reader:
                oldest = reader.names[0]
            print(f"deleting {oldest}", flush=True)
            writer.delete_episode(oldest)
            print(f"deleted {oldest}", flush=True)
        elif mode.endswith("compact") and seed % 2 == 0:
            print("compacting", flush=True)
            writer.compact()
            print("compacted", flush=True)


if __name__ == "__main__":
    main()
