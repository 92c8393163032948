"""Sim-to-sim check: drive plain MuJoCo with nothing but an exported policy, its metadata and the task's MJCF.

    python sim2sim.py POLICY.onnx [--episodes N] [--seed S] [--json] [--mjcf FILE] [--reward-module FILE]

Imports numpy, mujoco, onnxruntime and the two files beside it (``controller.py``, ``rewards.py``); never
robodistill or torch. Each control step reads every declared sensor from ``MjData.sensordata`` by name, lets
``OnnxController.step_sensors`` assemble the observation, writes the actuator-unit action to ``data.ctrl`` and
runs ``decimation`` physics steps: exactly the training loop's timing (the observation is the sensordata computed
inside the last ``mj_step``).

Episodes: when ``episodes.npz`` lies beside the ONNX file (``robodistill export`` writes it) episode ``i`` starts
from its recorded ``qpos``, ``qvel`` and ``command`` on the recorded model (the MJCF plus the task's per-episode
model fields, nominal parameters), and the file's ``reference_returns`` (the torch student on the same episodes)
are reported beside the result. Otherwise each episode starts from the MJCF's ``home`` keyframe (or ``qpos0``)
with a seeded ±0.01 perturbation and a zero command.

Exit codes: 0 done; 2 bad usage or input (one line on stderr); 1 a failure at run time.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import mujoco
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from controller import OnnxController  # noqa: E402
from rewards import REWARDS  # noqa: E402

KIT = Path(__file__).resolve().parent
DEFAULT_HORIZON = 50  # control steps of each episode whose return is also reported (see robodistill/verify.py)


class UsageError(Exception):
    """Bad usage or a bad input file (exit code 2)."""


def find_mjcf(onnx_path: Path, name: str, explicit: str | None = None) -> Path:
    """The MJCF: ``--mjcf``, else beside the ONNX file, else the repository's ``assets/`` folder."""
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise UsageError(f"MJCF not found: {path}")
        return path
    for candidate in (onnx_path.parent / name, KIT.parent / "assets" / name):
        if candidate.is_file():
            return candidate
    raise UsageError(f"MJCF {name!r} is neither beside {onnx_path} nor in {KIT.parent / 'assets'}; pass --mjcf")


def load_reward(task: str, model: mujoco.MjModel, metadata: dict[str, Any], module: str | None) -> Any:
    """The task's numpy reward: ``--reward-module FILE`` (defining ``Reward``) or the built-in table."""
    if module:
        spec = importlib.util.spec_from_file_location("sim2sim_reward", module)
        if spec is None or not Path(module).is_file():
            raise UsageError(f"reward module not found: {module}")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        if not hasattr(mod, "Reward"):
            raise UsageError(f"reward module {module} defines no Reward(model, metadata) class")
        return mod.Reward(model, metadata)
    if task not in REWARDS:
        raise UsageError(f"no built-in reward for task {task!r} (known: {', '.join(sorted(REWARDS))}); pass "
                         "--reward-module FILE defining Reward(model, metadata) with reward() and terminated()")
    try:
        return REWARDS[task](model, metadata)
    except ValueError as exc:  # e.g. reward scales the table does not know
        raise UsageError(str(exc)) from None


def check_model(model: mujoco.MjModel, meta: dict[str, Any]) -> dict[str, slice]:
    """Check the MJCF against the metadata; return each declared sensor's slice of ``sensordata``."""
    slices = {}
    for term in meta["observation_terms"]:
        if term["kind"] != "sensor":
            continue
        sid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SENSOR, term["sensor"])
        if sid < 0 or int(model.sensor_dim[sid]) != int(term["sensor_dim"]):
            raise UsageError(f"MJCF sensor {term['sensor']!r} is missing or not {term['sensor_dim']} wide")
        adr = int(model.sensor_adr[sid])
        slices[term["sensor"]] = slice(adr, adr + int(model.sensor_dim[sid]))
    actuators = [mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_ACTUATOR, i) for i in range(model.nu)]
    if actuators != list(meta["action_names"]):
        raise UsageError(f"MJCF actuators {actuators} differ from the policy's {meta['action_names']}")
    if abs(float(model.opt.timestep) - float(meta["physics_timestep"])) > 1e-12:
        raise UsageError(f"MJCF timestep {model.opt.timestep} differs from the policy's {meta['physics_timestep']}")
    return slices


def load_episodes(path: Path, model: mujoco.MjModel, n: int | None, seed: int, command_dim: int) -> dict[str, Any]:
    """Initial states (and model fields, reference returns) of ``n`` episodes: recorded, or sampled."""
    if path.is_file():
        data = dict(np.load(path))
        total = int(data["qpos"].shape[0])
        n = total if n is None else n
        if n > total:
            raise UsageError(f"{path} holds {total} episodes; asked for {n}")
        out = {k: (v[:n] if v.ndim else v) for k, v in data.items()}
        out["source"] = str(path)
        return out
    n = 10 if n is None else n
    rng = np.random.default_rng(seed)
    key = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_KEY, "home")
    qpos0 = model.key_qpos[key].copy() if key >= 0 else model.qpos0.copy()
    return {"qpos": qpos0 + rng.uniform(-0.01, 0.01, size=(n, model.nq)),
            "qvel": rng.uniform(-0.01, 0.01, size=(n, model.nv)), "command": np.zeros((n, command_dim)),
            "source": f"sampled (seed {seed})"}


def run_episode(ctrl: OnnxController, model: mujoco.MjModel, data: mujoco.MjData, slices: dict[str, slice],
                reward: Any, qpos: np.ndarray, qvel: np.ndarray, command: np.ndarray | None, steps: int,
                decimation: int, horizon: int) -> tuple[float, int, float, bool]:
    """One episode from ``(qpos, qvel)``: its return, its length, its return over the first ``horizon`` steps, and
    whether it failed (it ends at the first termination, which is a failure, as is a fault; or at a truncation by
    the reward table's ``truncated`` where it has one)."""
    mujoco.mj_resetData(model, data)
    data.qpos[:], data.qvel[:] = qpos, qvel
    mujoco.mj_forward(model, data)
    ctrl.reset()
    cmd = np.zeros((1, 0)) if command is None else command.reshape(1, -1)  # [1, C]
    prev = np.zeros((1, model.nu))
    total, length, early, failed = 0.0, 0, None, False
    for t in range(steps):
        if t == horizon:
            early = total
        readings = {name: data.sensordata[s] for name, s in slices.items()}
        action = ctrl.step_sensors(readings, command)  # [A], actuator units
        data.ctrl[:] = action
        time_before = data.time
        for _ in range(decimation):
            mujoco.mj_step(model, data)
        length += 1
        if data.time <= time_before or not np.isfinite(data.qpos).all():  # MuJoCo reset a diverged simulation
            failed = True
            break
        a = ctrl.normalized(action).reshape(1, -1)  # [1, A] in [-1, 1]
        sim = (data.qpos[None, :], data.qvel[None, :], data.sensordata[None, :])
        total += float(reward.reward(*sim, a, prev, cmd)[0])
        prev = a
        if bool(reward.terminated(*sim, cmd)[0]):
            failed = True
            break
        if hasattr(reward, "truncated") and bool(reward.truncated(*sim, cmd)[0]):
            break
    return total, length, total if early is None else early, failed


def evaluate(policy: Path, episodes: int | None = None, seed: int = 0, mjcf: str | None = None,
             reward_module: str | None = None, episodes_file: str | None = None) -> dict[str, Any]:
    """Run the episodes; the JSON-able result."""
    if not policy.is_file():
        raise UsageError(f"ONNX policy not found: {policy}")
    try:
        ctrl = OnnxController(policy)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    meta = ctrl.metadata
    mjcf_path = find_mjcf(policy, meta["mjcf"], mjcf)
    try:
        model = mujoco.MjModel.from_xml_path(str(mjcf_path))
    except ValueError as exc:
        raise UsageError(f"MJCF {mjcf_path} does not compile: {str(exc).strip().splitlines()[0]}") from None
    slices = check_model(model, meta)
    command_dim = sum(int(t["dim"]) for t in meta["observation_terms"] if t["kind"] == "command")
    eps = load_episodes(Path(episodes_file) if episodes_file else policy.parent / "episodes.npz", model, episodes,
                        seed, command_dim)
    reward = load_reward(meta["task"], model, meta, reward_module)
    nominal = {k[len("model."):]: getattr(model, k[len("model."):]).copy() for k in eps if k.startswith("model.")}
    data = mujoco.MjData(model)
    n = int(eps["qpos"].shape[0])
    returns, lengths, early = np.zeros(n), np.zeros(n, dtype=np.int64), np.zeros(n)
    failed = np.zeros(n, dtype=bool)
    horizon = int(eps.get("horizon", DEFAULT_HORIZON))
    for i in range(n):
        for field in nominal:  # the recorded model of episode i (the task's per-episode model fields)
            getattr(model, field)[...] = eps[f"model.{field}"][i]
        cmd = eps["command"][i] if command_dim else None
        returns[i], lengths[i], early[i], failed[i] = run_episode(
            ctrl, model, data, slices, reward, eps["qpos"][i], eps["qvel"][i], cmd, int(meta["episode_length"]),
            int(meta["decimation"]), horizon)
    out: dict[str, Any] = {
        "policy": str(policy), "task": meta["task"], "mjcf": str(mjcf_path), "episodes": n,
        "episode_source": eps["source"], "mean_return": float(returns.mean()), "std_return": float(returns.std()),
        "mean_length": float(lengths.mean()), "failure_rate": float(failed.mean()), "returns": returns.tolist(),
        "lengths": lengths.tolist(),
        "horizon": horizon, "horizon_returns": early.tolist(),
        "latency_us": {k: ctrl.latency[k] for k in ("p50_us", "p99_us", "max_us")},
    }
    if "reference_returns" in eps:
        ref = float(np.mean(eps["reference_returns"]))
        out["reference_mean_return"] = ref
        out["relative_gap"] = abs(out["mean_return"] - ref) / max(abs(ref), 1e-9)
    return out


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="sim2sim.py", description=__doc__.splitlines()[0])
    parser.add_argument("policy", type=Path, help="policy.onnx written by robodistill export")
    parser.add_argument("--episodes", type=int, default=None, help="episodes to run (default: all recorded, or 10)")
    parser.add_argument("--seed", type=int, default=0, help="seed of sampled initial states (no episodes.npz)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--mjcf", default=None, help="the task's MJCF (default: beside the ONNX file, then assets/)")
    parser.add_argument("--episodes-file", default=None, help="recorded episodes (default: episodes.npz beside)")
    parser.add_argument("--reward-module", default=None, help="Python file defining Reward(model, metadata)")
    args = parser.parse_args(argv)
    try:
        if args.episodes is not None and args.episodes < 1:
            raise UsageError(f"--episodes must be >= 1, got {args.episodes}")
        result = evaluate(args.policy, args.episodes, args.seed, args.mjcf, args.reward_module, args.episodes_file)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - one readable line for a run-time failure
        print(f"error: sim2sim failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result))
    else:
        gap = (f", reference {result['reference_mean_return']:.2f} (gap {100 * result['relative_gap']:.2f}%)"
               if "reference_mean_return" in result else "")
        print(f"{result['task']}: mean return {result['mean_return']:.2f} ± {result['std_return']:.2f} over "
              f"{result['episodes']} episodes ({result['episode_source']}){gap}; "
              f"{100 * result['failure_rate']:.1f}% ended by a termination or fault; controller p50 "
              f"{result['latency_us']['p50_us']:.1f} µs, p99 {result['latency_us']['p99_us']:.1f} µs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
