"""The interactive viewer: a policy drives one environment in MuJoCo's passive viewer, in real time.

Physics stays in the backend (its state lives in arrays); every control step the viewer's ``MjData`` is set
from ``backend.env_physics_state(0)`` and the window is synced. The viewer shows this environment's own randomized
``MjModel``, so a new episode's mass or length is visible at once. Keys are read on the viewer's thread and
handled on ours. MuJoCo's viewer already binds letters (visual flags), digits 0-5 (geom groups), Backspace,
Esc, [ ], - =, F1-F7 and the left/right arrows, so ours are (``KEYS_HELP``): 7 / 8 / 9 / 6 student, teacher,
ONNX, random policy; Space pause; Enter new episode (resampled parameters); Home restart this episode; Up / Down
push the robot.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch

from robodistill.errors import UsageError

if TYPE_CHECKING:
    from robodistill.config import Config
    from robodistill.evaluation import Policy

log = logging.getLogger(__name__)

# GLFW key codes (the viewer's key_callback receives them)
KEY_SPACE, KEY_ENTER, KEY_KP_ENTER, KEY_HOME, KEY_UP, KEY_DOWN = 32, 257, 335, 268, 265, 264
POLICY_KEYS = {ord("6"): "random", ord("7"): "student", ord("8"): "teacher", ord("9"): "onnx"}
POLICY_KEYS.update({key - ord("0") + 320: name for key, name in list(POLICY_KEYS.items())})  # keypad 6-9

KEYS_HELP = (
    ("7 / 8 / 9 / 6", "student / teacher / ONNX / random policy"),
    ("Space", "pause / resume"),
    ("Enter", "new episode (resample the randomized parameters)"),
    ("Home", "restart this episode (same parameters and start)"),
    ("Up / Down", "push the robot (velocity kick on the root, + / -)"),
)


@dataclass
class ViewerState:
    """What the overlay shows and the key handler changes."""

    policy: str
    paused: bool = False
    episode: int = 1
    step: int = 0
    total_steps: int = 0
    ret: float = 0.0
    last_return: float | None = None
    message: str = ""
    events: collections.deque = field(default_factory=collections.deque)


class PolicyDriver:
    """One environment under a switchable policy; every stateful policy sees every observation, so switching
    mid-episode hands over a policy whose history is already filled."""

    def __init__(self, cfg: "Config", policies: dict[str, "Policy"], active: str, seed: int,
                 command: np.ndarray | None) -> None:
        from robodistill.env import env_from_config
        from robodistill.viz.common import fix_command

        self.policies = policies
        self.env = env_from_config(cfg, 1, seed=seed)
        fix_command(self.env, command)
        self.backend = self.env.backend
        self.model = self.backend.env_model(0)
        self.state = ViewerState(policy=active)
        self.obs = self.env.reset()
        self._start = self._snapshot()
        self._reset_policies()

    def _snapshot(self) -> dict:
        """The environment now (an episode's start), as the backend snapshots it; the drawn model follows."""
        self.backend.env_model(0, self.model)  # the episode's randomized model, shown at once
        return self.backend.snapshot()

    def _reset_policies(self) -> None:
        for policy in self.policies.values():
            policy.reset(1)
        self.state.step, self.state.ret = 0, 0.0

    @torch.no_grad()
    def step(self) -> None:
        """One control step under the active policy; a finished episode starts the next one."""
        actions = {name: pol.act(self.obs) for name, pol in self.policies.items()}
        self.obs, reward, terminated, truncated, _ = self.env.step(actions[self.state.policy])
        self.state.ret += float(reward[0])
        self.state.step += 1
        self.state.total_steps += 1
        if bool(terminated[0] | truncated[0]):
            self.state.last_return = self.state.ret
            self.state.episode += 1
            self._start = self._snapshot()
            self._reset_policies()

    def new_episode(self) -> None:
        """The next episode of the seeded stream: new randomized parameters and start."""
        self.state.last_return = self.state.ret if self.state.step else self.state.last_return
        self.obs = self.env.reset()
        self._start = self._snapshot()
        self.state.episode += 1
        self._reset_policies()

    def restart(self) -> None:
        """This episode again from its start (same parameters)."""
        self.backend.restore(self._start)
        self.backend.env_model(0, self.model)
        self.obs = self.env_obs(*self.backend.observe())
        self._reset_policies()

    @staticmethod
    def env_obs(proprio: np.ndarray, privileged: np.ndarray) -> dict[str, torch.Tensor]:
        """Backend arrays as the torch observation dict."""
        return {"proprio": torch.as_tensor(proprio, dtype=torch.float32),
                "privileged": torch.as_tensor(privileged, dtype=torch.float32)}

    def push(self, kick: np.ndarray) -> None:
        """Add ``kick [nv]`` to the velocity (takes effect at the next control step)."""
        self.backend.push(kick[None, :])

    def close(self) -> None:
        """Release the environment."""
        self.env.close()


def overlay_texts(driver: PolicyDriver) -> list[tuple[int, int, str, str]]:
    """Status (top left) and key help (bottom right) for ``viewer.set_texts``."""
    import mujoco

    s, b = driver.state, driver.backend
    labels = ["policy", "episode", "step", "return", "last return"]
    values = [s.policy + ("  [paused]" if s.paused else ""), str(s.episode), f"{s.step} / {b.task.episode_length}",
              f"{s.ret:.1f}", "-" if s.last_return is None else f"{s.last_return:.1f}"]
    if b.task.command_dim:
        labels.append("command")
        values.append(", ".join(f"{v:.2f}" for v in b.command[0]))
    for name, v in b.params.items():
        labels.append(name)
        values.append(f"{float(v[0]):.3g}")
    if s.message:
        labels.append("")
        values.append(s.message)
    font, grid = mujoco.mjtFontScale, mujoco.mjtGridPos
    keys, meanings = "\n".join(k for k, _ in KEYS_HELP), "\n".join(v for _, v in KEYS_HELP)
    return [(font.mjFONTSCALE_150, grid.mjGRID_TOPLEFT, "\n".join(labels), "\n".join(values)),
            (font.mjFONTSCALE_100, grid.mjGRID_BOTTOMRIGHT, keys, meanings)]


def make_key_callback(state: ViewerState) -> Callable[[int], None]:
    """A callback for the viewer thread: it only queues the key; :func:`handle_key` acts on the main thread."""

    def key_callback(key: int) -> None:
        state.events.append(key)

    return key_callback


def handle_key(driver: PolicyDriver, key: int, kick: np.ndarray, available: dict[str, str]) -> None:
    """Act on one key press (main thread). ``available`` maps policy names to why they cannot be used."""
    s = driver.state
    if key in POLICY_KEYS:
        name = POLICY_KEYS[key]
        if name in driver.policies:
            s.policy, s.message = name, f"switched to {name}"
        else:
            s.message = f"{name} unavailable: {available.get(name, 'not loaded')}"
    elif key == KEY_SPACE:
        s.paused = not s.paused
        s.message = "paused" if s.paused else ""
    elif key in (KEY_ENTER, KEY_KP_ENTER):
        driver.new_episode()
        s.message = "new episode"
    elif key == KEY_HOME:
        driver.restart()
        s.message = "restarted"
    elif key in (KEY_UP, KEY_DOWN):
        driver.push(kick if key == KEY_UP else -kick)
        s.message = "push " + ("+" if key == KEY_UP else "-")


def load_policies(run: Path, cfg: "Config", active: str, seed: int) -> tuple[dict[str, "Policy"], dict[str, str]]:
    """Every policy the run has (the active one must load; others are skipped with the reason)."""
    from robodistill.viz.common import POLICIES, load_policy

    policies: dict[str, "Policy"] = {}
    missing: dict[str, str] = {}
    for name in POLICIES:
        try:
            policies[name] = load_policy(run, name, cfg, seed)
        except UsageError as exc:
            if name == active:
                raise
            missing[name] = str(exc)
    return policies, missing


def run_viewer(run: Path, cfg: "Config", policy: str, seed: int, command: np.ndarray | None = None,
               max_steps: int | None = None, speed: float = 1.0) -> int:
    """Open the passive viewer and drive it until the window closes (or ``max_steps`` control steps)."""
    import mujoco
    import mujoco.viewer

    from robodistill.viz.common import push_velocity

    policies, missing = load_policies(run, cfg, policy, seed)
    driver = PolicyDriver(cfg, policies, policy, seed, command)
    model = driver.model
    data = mujoco.MjData(model)
    kick = push_velocity(model)
    dt = driver.env.dt

    def sync_data() -> None:
        mujoco.mj_setState(model, data, driver.backend.env_physics_state(0), mujoco.mjtState.mjSTATE_FULLPHYSICS)
        mujoco.mj_forward(model, data)

    sync_data()
    try:
        viewer = mujoco.viewer.launch_passive(model, data, key_callback=make_key_callback(driver.state))
    except Exception as exc:  # noqa: BLE001 - no display, no GL: say what to do
        driver.close()
        raise RuntimeError(f"cannot open the MuJoCo viewer ({exc}); it needs a display: set DISPLAY (e.g. run "
                           "under `xvfb-run`) and MUJOCO_GL=glfw, or use `robodistill render` instead") from None
    _set_camera(viewer, model)
    log.info("viewer: %s", "; ".join(f"{k}: {v}" for k, v in KEYS_HELP))
    overlay = _OverlayThread(viewer)
    started = next_time = time.perf_counter()
    try:
        while viewer.is_running():
            with viewer.lock():
                while driver.state.events:
                    handle_key(driver, driver.state.events.popleft(), kick, missing)
                if not driver.state.paused:
                    driver.step()
                sync_data()
                overlay.texts = overlay_texts(driver)
            viewer.sync()
            if max_steps is not None and driver.state.total_steps >= max_steps:
                break
            # real time: one control period per step (scaled by --speed); paused frames idle at the same rate
            next_time += dt / speed if speed > 0 else 0.0
            delay = next_time - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            elif delay < -0.25:  # far behind (a slow machine or a stall): do not try to catch up
                next_time = time.perf_counter()
    finally:
        overlay.stop()
        viewer.close()
        _wait_for_viewer_thread()
        driver.close()
    print(f"viewer closed after {driver.state.total_steps} steps, {driver.state.episode} episode(s), "
          f"{time.perf_counter() - started:.1f} s")
    return 0


class _OverlayThread(threading.Thread):
    """Hands the newest overlay texts to the viewer a few times a second.

    ``Handle.set_texts`` waits until the viewer has drawn a frame (on a software renderer that is 100+ ms), so
    it runs here instead of in the control loop, which keeps real time.
    """

    def __init__(self, viewer: Any, period: float = 0.1) -> None:
        super().__init__(name="viewer-overlay", daemon=True)
        self.viewer, self.period = viewer, period
        self.texts: list[tuple[int, int, str, str]] | None = None
        self._stop_event = threading.Event()
        self.start()

    def run(self) -> None:
        shown = None
        while not self._stop_event.wait(self.period):
            texts = self.texts
            if texts is not None and texts != shown and self.viewer.is_running():
                self.viewer.set_texts(texts)
                shown = texts

    def stop(self) -> None:
        """Stop handing texts over (waits briefly for a call in progress)."""
        self._stop_event.set()
        self.join(timeout=2.0)


def _wait_for_viewer_thread(timeout: float = 10.0) -> None:
    """Let the viewer's render thread finish and free its window before the process exits.

    ``Handle.close`` only asks it to stop; exiting at once races GLFW's own shutdown against the thread's last
    frame (seen under Xvfb: ``GLXBadDrawable`` and a hang in ``glfw.terminate``).
    """
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and thread.name.endswith("(_launch_internal)"):
            thread.join(timeout)


def _set_camera(viewer: "object", model: "object") -> None:
    """Start from the renderer's camera choice (tracking for floating robots, ``front`` if present)."""
    from robodistill.viz.common import make_camera

    cam = make_camera(model)
    with viewer.lock():  # type: ignore[attr-defined]
        vc = viewer.cam  # type: ignore[attr-defined]
        vc.type, vc.trackbodyid, vc.fixedcamid = cam.type, cam.trackbodyid, cam.fixedcamid
        if cam.type != 0:  # tracking or fixed: carry the distance and angles too
            vc.distance, vc.azimuth, vc.elevation = cam.distance, cam.azimuth, cam.elevation
