"""Run an exported robodistill policy with numpy and onnxruntime alone (no robodistill, no torch).

``OnnxController`` keeps the policy's state (its observation window or hidden state) itself, validates every
input, and can assemble the observation from named sensor readings using the terms declared in the ONNX
metadata, so robot code never re-implements observations, normalization or history stacking::

    ctrl = OnnxController("policy.onnx")
    ctrl.reset()                                   # at start-up, and after every e-stop / re-enable
    every control_dt seconds:
        action = ctrl.step_sensors({"hinge_pos": enc.read()})   # actuator units, float32 [A]
        # or: action = ctrl.step(obs)  with obs [Dp] already assembled in ctrl.observation_names order

Input rules: observations are real floating arrays (float16/32/64, cast to float32); integer, boolean, complex
and object arrays are rejected, since an integer reading usually means raw encoder counts that were never
converted to SI units. Any NaN or infinity raises ``ValueError`` naming the offending entries; the state is then
left untouched and no action is produced, so a NaN never reaches an actuator.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import onnxruntime as ort

__all__ = ["OnnxController", "observation_from_sensors", "transform_sensor"]

_REQUIRED = ("observation_names", "observation_terms", "action_names", "action_offset", "action_scale",
             "state_shape", "state_initial_value", "control_dt")
_LATENCY_WINDOW = 10_000  # per-call durations kept for the latency statistics


def transform_sensor(values: np.ndarray, transform: str) -> np.ndarray:
    """A declared sensor transform of ``values [B, d]`` (identical to robodistill.tasks.base.transform_sensor)."""
    if transform == "identity":
        return values
    if transform == "sincos":
        return np.concatenate([np.sin(values), np.cos(values)], axis=-1)
    if transform == "projected_gravity":
        # orientation quaternion [B, 4] (w, x, y, z): gravity (0, 0, -1) rotated into the body frame
        w, x, y, z = values[:, 0], values[:, 1], values[:, 2], values[:, 3]
        gx = -2.0 * (x * z - w * y)
        gy = -2.0 * (y * z + w * x)
        gz = -(1.0 - 2.0 * (x * x + y * y))
        return np.stack([gx, gy, gz], axis=-1)
    raise ValueError(f"unknown sensor transform {transform!r}")


def _as_real(name: str, value: Any) -> np.ndarray:
    """``value`` as a float64 array; integer, boolean, complex and object inputs are rejected."""
    arr = np.asarray(value)
    if arr.dtype.kind != "f":
        raise ValueError(f"{name} must be a floating-point array (float32 or float64), got dtype {arr.dtype}; "
                         "convert raw readings to SI units as floats first")
    return arr


def observation_from_sensors(terms: list[dict[str, Any]], readings: Mapping[str, Any], prev_action: np.ndarray,
                             command: Any = None) -> np.ndarray:
    """Assemble the observation ``[B, Dp]`` (float64) from named sensor readings and declared terms.

    ``readings[name]`` is ``[sensor_dim]`` or ``[B, sensor_dim]`` (a float is accepted for 1-wide sensors);
    ``prev_action`` is ``[B, A]`` in [-1, 1]; ``command`` is ``[C]`` or ``[B, C]`` when a command term is declared.
    """
    batch = prev_action.shape[0]
    parts = []
    for term in terms:
        kind = term["kind"]
        if kind == "sensor":
            name = term["sensor"]
            if name not in readings:
                needed = [t["sensor"] for t in terms if t["kind"] == "sensor"]
                missing = [n for n in needed if n not in readings]
                raise ValueError(f"missing sensor reading(s) {missing}; this policy reads {needed}")
            value = _as_real(f"reading {name!r}", readings[name])
            width = int(term["sensor_dim"])
            if value.ndim <= 1:
                value = value.reshape(1, -1)
            if value.shape != (batch, width):
                raise ValueError(f"reading {name!r} must have shape ({width},) or ({batch}, {width}), "
                                 f"got {np.shape(readings[name])}")
            parts.append(transform_sensor(value.astype(np.float64, copy=False), term["transform"]))
        elif kind == "prev_action":
            parts.append(prev_action)
        elif kind == "command":
            width = int(term["dim"])
            if command is None:
                raise ValueError(f"this policy observes a command of {width} values: pass command=[...]")
            cmd = _as_real("command", command)
            cmd = cmd.reshape(1, -1) if cmd.ndim <= 1 else cmd
            if cmd.shape[-1] != width or cmd.shape[0] not in (1, batch):
                raise ValueError(f"command must have shape ({width},) or ({batch}, {width}), got {np.shape(command)}")
            parts.append(np.broadcast_to(cmd, (batch, width)))
        else:
            raise ValueError(f"unknown observation term kind {kind!r} in the policy metadata")
    if command is not None and not any(t["kind"] == "command" for t in terms):
        raise ValueError("this policy observes no command; pass command=None")
    return np.concatenate(parts, axis=-1)


class OnnxController:
    """A stateful controller around an exported policy: ``step(obs) -> action`` in actuator units."""

    def __init__(self, path: str | Path, intra_op_threads: int = 1) -> None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"ONNX policy not found: {path}")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = intra_op_threads  # one thread: lowest batch-1 latency, no spinning pool
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises several types for unreadable models
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ValueError(f"cannot load ONNX policy {path}: {first[:200]}") from None
        self.path = path
        self._metadata = _decode(self.session.get_modelmeta().custom_metadata_map)
        missing = [k for k in _REQUIRED if k not in self._metadata]
        if missing:
            raise ValueError(f"{path} is not a robodistill policy: metadata lacks {', '.join(missing)}")
        meta = self._metadata
        self.observation_names: list[str] = list(meta["observation_names"])
        self.action_names: list[str] = list(meta["action_names"])
        self.obs_dim, self.action_dim = len(self.observation_names), len(self.action_names)
        self.control_dt = float(meta["control_dt"])
        self.action_offset = np.asarray(meta["action_offset"], dtype=np.float32)  # [A]
        self.action_scale = np.asarray(meta["action_scale"], dtype=np.float32)  # [A]
        self.state_shape = tuple(int(v) for v in meta["state_shape"])
        self._state_init = float(meta["state_initial_value"])
        self._terms: list[dict[str, Any]] = list(meta["observation_terms"])
        inputs = {i.name: i.shape for i in self.session.get_inputs()}
        if set(inputs) != {"obs", "state"} or inputs["obs"][-1] != self.obs_dim:
            raise ValueError(f"{path}: graph inputs {inputs} do not match its metadata "
                             f"(obs [B, {self.obs_dim}], state [B, {', '.join(map(str, self.state_shape))}])")
        self._outputs = ["action", "next_state"]
        self._durations = np.zeros(_LATENCY_WINDOW, dtype=np.int64)  # ns, ring buffer
        self._calls = 0
        self.reset()

    # ---- state ----------------------------------------------------------------------------------------

    @property
    def metadata(self) -> dict[str, Any]:
        """The policy's metadata, JSON values decoded (a copy)."""
        return json.loads(json.dumps(self._metadata))

    def reset(self) -> None:
        """Forget the state and the previous action: call at start-up and after every e-stop or re-enable."""
        self._state: np.ndarray | None = None  # [B, *state_shape], sized on the next step
        self._last_action: np.ndarray | None = None  # [B, A], actuator units

    @property
    def state(self) -> np.ndarray | None:
        """The current policy state ``[B, *state_shape]`` (None right after :meth:`reset`)."""
        return None if self._state is None else self._state.copy()

    @property
    def last_action(self) -> np.ndarray | None:
        """The last action returned, in actuator units (None right after :meth:`reset`)."""
        return None if self._last_action is None else self._last_action.copy()

    def normalized(self, action: np.ndarray) -> np.ndarray:
        """An actuator-unit action mapped back to the policy's [-1, 1] range: ``clip((a - offset) / scale)``."""
        return np.clip((np.asarray(action, dtype=np.float64) - self.action_offset) / self.action_scale, -1.0, 1.0)

    # ---- stepping -------------------------------------------------------------------------------------

    def step(self, obs: Any) -> np.ndarray:
        """Action (float32, actuator units) for the newest observation: ``[Dp] -> [A]`` or ``[B, Dp] -> [B, A]``."""
        t0 = time.perf_counter_ns()
        arr = _as_real("obs", obs)
        single = arr.ndim == 1
        if not (single or arr.ndim == 2) or arr.shape[-1] != self.obs_dim or arr.size == 0:
            raise ValueError(f"obs must have shape ({self.obs_dim},) or (B, {self.obs_dim}), got {arr.shape}; "
                             f"order: {self.observation_names}")
        batch = arr.reshape(1, -1) if single else arr
        obs32 = np.ascontiguousarray(batch, dtype=np.float32)
        if not np.isfinite(obs32).all():
            raise ValueError(f"obs has non-finite values: {self._bad_entries(obs32)}; no action computed "
                             "(the state is unchanged)")
        state = self._state
        if state is None:
            state = np.full((obs32.shape[0], *self.state_shape), self._state_init, dtype=np.float32)
        elif state.shape[0] != obs32.shape[0]:
            raise ValueError(f"batch size changed from {state.shape[0]} to {obs32.shape[0]}; call reset() first")
        action, next_state = self.session.run(self._outputs, {"obs": obs32, "state": state})
        if not np.isfinite(action).all():  # cannot happen for finite inputs unless the weights are corrupt
            raise RuntimeError("the policy produced a non-finite action; check the ONNX file's weights")
        self._state, self._last_action = next_state, action
        self._durations[self._calls % _LATENCY_WINDOW] = time.perf_counter_ns() - t0
        self._calls += 1
        return action[0] if single else action

    def observation(self, readings: Mapping[str, Any], command: Any = None) -> np.ndarray:
        """The observation ``[Dp]`` or ``[B, Dp]`` the policy would see for these sensor readings."""
        batch = _reading_batch(readings, self._terms)
        prev = self._prev_action(batch)
        obs = observation_from_sensors(self._terms, readings, prev, command)
        return obs[0] if batch is None else obs

    def step_sensors(self, readings: Mapping[str, Any], command: Any = None) -> np.ndarray:
        """Assemble the observation from named sensor readings (declared terms) and :meth:`step` it.

        ``readings`` maps each MJCF sensor name the policy declares to its value (``[d]``, or ``[B, d]`` for a
        batch); extra keys are ignored. The previous-action term is the controller's own last action mapped back
        to [-1, 1]; ``command`` is required when the policy observes one.
        """
        return self.step(self.observation(readings, command))

    def _prev_action(self, batch: int | None) -> np.ndarray:
        rows = 1 if batch is None else batch
        if self._last_action is None:
            return np.zeros((rows, self.action_dim))
        if self._last_action.shape[0] != rows:
            raise ValueError(f"batch size changed from {self._last_action.shape[0]} to {rows}; call reset() first")
        return self.normalized(self._last_action)

    def _bad_entries(self, obs: np.ndarray) -> str:
        rows, cols = np.nonzero(~np.isfinite(obs))
        items = [f"{self.observation_names[c]}={obs[r, c]}" + (f" (row {r})" if obs.shape[0] > 1 else "")
                 for r, c in zip(rows[:5], cols[:5])]
        return ", ".join(items) + (f" and {len(rows) - 5} more" if len(rows) > 5 else "")

    # ---- timing ---------------------------------------------------------------------------------------

    @property
    def latency(self) -> dict[str, float]:
        """Per-call wall time of :meth:`step` (validation included) over the last calls: p50/p99/max in µs."""
        n = min(self._calls, _LATENCY_WINDOW)
        if n == 0:
            return {"calls": 0, "p50_us": float("nan"), "p99_us": float("nan"), "max_us": float("nan"),
                    "mean_us": float("nan")}
        us = self._durations[:n] / 1e3
        return {"calls": self._calls, "p50_us": float(np.percentile(us, 50)), "p99_us": float(np.percentile(us, 99)),
                "max_us": float(us.max()), "mean_us": float(us.mean())}

    def reset_latency(self) -> None:
        """Forget the recorded call durations."""
        self._calls = 0


def _reading_batch(readings: Mapping[str, Any], terms: list[dict[str, Any]]) -> int | None:
    """None for single readings ``[d]``, else the batch size of ``[B, d]`` readings."""
    for term in terms:
        if term["kind"] == "sensor" and term["sensor"] in readings:
            shape = np.shape(readings[term["sensor"]])
            return shape[0] if len(shape) == 2 else None
    return None


def _decode(props: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in props.items():
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


if __name__ == "__main__":  # python controller.py POLICY.onnx: print the metadata and one timed call
    import sys

    if len(sys.argv) != 2:
        sys.exit("usage: python controller.py POLICY.onnx")
    ctrl = OnnxController(sys.argv[1])
    for _ in range(200):
        ctrl.step(np.zeros(ctrl.obs_dim, dtype=np.float32))
    print(json.dumps({"observation_names": ctrl.observation_names, "action_names": ctrl.action_names,
                      "control_dt": ctrl.control_dt, "latency": ctrl.latency}))
