"""Helper for test_store_kill.py (not a test): appends (or deletes) episodes in a loop until it
is killed, printing each name once the call that saved it has returned.

    python store_kill_writer.py FILE FIRST_SEED append|churn
"""

from __future__ import annotations

import sys

import numpy as np

from dp_agent.demos import DemoWriter

ENV_ARGS = {"env_name": "dp_agent/PushT-v0", "env_kwargs": {"obs_type": "state"}}


def episode_arrays(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A PushT-sized episode that is a pure function of its seed: obs (T, 5), actions (T, 2),
    rewards (T,), dones (T,)."""
    rng = np.random.default_rng(seed)
    T = 100 + seed % 100
    obs = rng.uniform(0, 512, size=(T, 5)).astype(np.float32)
    actions = rng.uniform(0, 512, size=(T, 2)).astype(np.float32)
    rewards = rng.random(T).astype(np.float32)
    dones = np.zeros(T, bool)
    dones[-1] = True
    return obs, actions, rewards, dones


def main() -> None:
    path, seed, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    writer = DemoWriter(path, ENV_ARGS)
    print("ready", flush=True)
    while True:
        name = writer.append_episode(*episode_arrays(seed), attrs={"seed": seed})
        print(f"saved {name} {seed}", flush=True)
        seed += 1
        if mode == "churn":  # delete the oldest episode after each append
            from dp_agent.demos import DemoReader

            with DemoReader(path) as reader:
                oldest = reader.names[0]
            print(f"deleting {oldest}", flush=True)
            writer.delete_episode(oldest)
            print(f"deleted {oldest}", flush=True)


if __name__ == "__main__":
    main()
