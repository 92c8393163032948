"""Offscreen video: several policies side by side on the same episode (same seed, parameters and start).

Each policy drives its own one-environment :class:`~robodistill.env.BatchedEnv` built with the same seed, so the
randomized parameters and the initial state are identical; frames come from ``mujoco.Renderer`` (EGL when no
display is set) with a text overlay (policy, step, return) and are written as MP4 or GIF by imageio.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch

from robodistill.errors import UsageError

if TYPE_CHECKING:
    from robodistill.config import Config
    from robodistill.evaluation import Policy

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".gif")


@dataclass
class RenderStats:
    """What a rendering produced."""

    path: Path
    frames: int
    seconds: float
    bytes: int
    trajectories: dict[str, np.ndarray] = field(default_factory=dict)  # policy -> qpos at every frame [frames, nq]

    @property
    def frames_per_second(self) -> float:
        """Rendered (combined) frames per wall-clock second, simulation and encoding included."""
        return self.frames / max(self.seconds, 1e-9)


def check_output(path: Path) -> None:
    """Refuse an output file whose extension is not a supported video format."""
    if path.suffix.lower() not in VIDEO_EXTENSIONS:
        raise UsageError(f"--out {path}: unsupported extension {path.suffix or '(none)'!r}; use .mp4 or .gif")
    if path.suffix.lower() == ".mp4":
        try:
            import imageio_ffmpeg  # noqa: F401
        except ImportError:
            raise UsageError("writing .mp4 needs imageio-ffmpeg (pip install imageio-ffmpeg); or use .gif") from None


def ensure_headless_gl() -> None:
    """Render through EGL (no display needed) unless the user chose a backend with ``MUJOCO_GL``.

    mujoco picks its GL backend when it is first imported, which ``robodistill`` does before any command runs,
    so setting the variable now is not enough: the renderer's context class is swapped for EGL's as well.
    """
    if os.environ.get("MUJOCO_GL"):
        return
    os.environ["MUJOCO_GL"] = "egl"
    try:
        from mujoco.egl import GLContext
        from mujoco.rendering.classic import gl_context
    except (ImportError, OSError, RuntimeError) as exc:  # no EGL here: keep mujoco's default (GLFW)
        log.warning("EGL is not available (%s); rendering with mujoco's default GL backend", exc)
        return
    gl_context.GLContext = GLContext


def overlay(frame: np.ndarray, lines: Sequence[str]) -> np.ndarray:
    """Draw ``lines`` in the top-left corner of ``frame [H, W, 3]`` on a translucent box."""
    from PIL import Image, ImageDraw, ImageFont

    img = Image.fromarray(frame)
    draw = ImageDraw.Draw(img, "RGBA")
    size = max(10, frame.shape[0] // 22)
    try:
        font = ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one fixed-size bitmap font
        font = ImageFont.load_default()
    text = "\n".join(lines)
    box = draw.multiline_textbbox((6, 4), text, font=font, spacing=2)
    draw.rectangle((box[0] - 4, box[1] - 3, box[2] + 4, box[3] + 3), fill=(0, 0, 0, 140))
    draw.multiline_text((6, 4), text, font=font, fill=(255, 255, 255, 255), spacing=2)
    return np.asarray(img)


class _Lane:
    """One policy driving one environment, rendered into one tile."""

    def __init__(self, cfg: "Config", name: str, policy: "Policy", seed: int, width: int, height: int,
                 command: np.ndarray | None, quality: str = "fast") -> None:
        import mujoco

        from robodistill.env import env_from_config
        from robodistill.viz.common import fix_command, make_camera

        self.name, self.policy = name, policy
        self.env = env_from_config(cfg, 1, seed=seed)
        fix_command(self.env, command)
        self.backend = self.env.backend
        self.model = self.backend.env_model(0)  # this environment's randomized copy
        self.data = mujoco.MjData(self.model)
        self.renderer = mujoco.Renderer(self.model, height=height, width=width)
        self.camera = make_camera(self.model)
        self.fast = quality == "fast"
        self.obs = self.env.reset()
        self.policy.reset(1)
        self.episode, self.step_in_episode, self.ret = 1, 0, 0.0
        self.qpos: list[np.ndarray] = []  # the state drawn in each frame

    def frame(self) -> np.ndarray:
        """The current state rendered with the overlay, ``[H, W, 3]`` uint8."""
        import mujoco

        mujoco.mj_setState(self.model, self.data, self.backend.env_physics_state(0),
                           mujoco.mjtState.mjSTATE_FULLPHYSICS)
        mujoco.mj_forward(self.model, self.data)
        self.qpos.append(self.data.qpos.copy())
        self.renderer.update_scene(self.data, camera=self.camera)
        if self.fast:
            flags = self.renderer.scene.flags
            flags[mujoco.mjtRndFlag.mjRND_SHADOW] = flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0
        lines = [self.name, f"step {self.step_in_episode}", f"return {self.ret:.1f}"]
        if self.episode > 1:
            lines.append(f"episode {self.episode}")
        return overlay(self.renderer.render(), lines)

    @torch.no_grad()
    def step(self) -> None:
        """One control step; a finished episode restarts (same stream in every lane)."""
        self.obs, reward, terminated, truncated, _ = self.env.step(self.policy.act(self.obs))
        self.ret += float(reward[0])
        self.step_in_episode += 1
        if bool(terminated[0] | truncated[0]):
            self.backend.env_model(0, self.model)  # the new episode's randomized model
            self.policy.reset(1)
            self.episode, self.step_in_episode, self.ret = self.episode + 1, 0, 0.0

    def close(self) -> None:
        """Free the GL context and the environment."""
        self.renderer.close()
        self.env.close()


class GifWriter:
    """Frames to an animated GIF through Pillow, every frame mapped onto the first frame's palette (fast, and
    the colours do not flicker)."""

    def __init__(self, path: Path, fps: float, colors: int = 64) -> None:
        self.path, self.duration, self.colors = path, 1000.0 / fps, colors
        self.frames: list = []
        self.palette = None

    def append_data(self, frame: np.ndarray) -> None:
        """Add one ``[H, W, 3]`` uint8 frame."""
        from PIL import Image

        img = Image.fromarray(frame)
        if self.palette is None:
            self.palette = img.quantize(colors=self.colors, method=Image.Quantize.FASTOCTREE)
        self.frames.append(img.quantize(palette=self.palette, dither=Image.Dither.NONE))

    def close(self) -> None:
        """Write the file."""
        if self.frames:
            self.frames[0].save(self.path, format="GIF", save_all=True, append_images=self.frames[1:],
                                duration=self.duration, loop=0)
            self.frames = []


def render_video(cfg: "Config", policies: dict[str, "Policy"], out: Path, steps: int, seed: int,
                 width: int = 320, height: int = 240, fps: float | None = None,
                 command: np.ndarray | None = None, quality: str = "fast") -> RenderStats:
    """Play ``steps`` control steps of the same episode under each policy; write the tiles side by side.

    ``quality="fast"`` turns off shadows and reflections, which cost ~5x the frame time on a software GL.
    """
    check_output(out)
    ensure_headless_gl()
    t0 = time.time()
    lanes: list[_Lane] = []
    try:
        for name, pol in policies.items():
            lanes.append(_Lane(cfg, name, pol, seed, width, height, command, quality))
        fps = fps or 1.0 / lanes[0].env.dt
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.stem}.tmp{out.suffix}")
        if out.suffix.lower() == ".gif":
            writer: Any = GifWriter(tmp, fps)
        else:
            import imageio.v2 as imageio

            writer = imageio.get_writer(tmp, fps=fps, codec="libx264", quality=7, macro_block_size=8,
                                        ffmpeg_log_level="error")
        frames = 0
        try:
            for k in range(steps + 1):
                writer.append_data(np.concatenate([lane.frame() for lane in lanes], axis=1))  # [H, n*W, 3]
                frames += 1
                if k < steps:
                    for lane in lanes:
                        lane.step()
            writer.close()
            os.replace(tmp, out)
        finally:
            if tmp.exists():
                tmp.unlink()
    finally:
        for lane in lanes:
            lane.close()
    return RenderStats(out, frames, time.time() - t0, out.stat().st_size,
                       {lane.name: np.stack(lane.qpos) for lane in lanes})
