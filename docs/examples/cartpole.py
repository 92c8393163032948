"""Cart-pole: the bring-your-own-robot example of docs/custom_robot.md.

Name it in a config with ``task.entry_point: cartpole:CartPole`` (this folder on ``PYTHONPATH``) and optionally
``task.mjcf: cartpole.xml``. The student senses the cart position and the pole angle (with noise) and its last
action; the teacher also sees both velocities and the randomized masses and motor strength.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mujoco
import numpy as np

from robodistill.tasks.base import (
    Array, ParamSpec, ParamsTerm, PrevActionTerm, SensorTerm, SimArrays, Task, index_set,
)


class CartPole(Task):
    """Keep the pole upright and the cart on the rail; +1 per step alive, the episode ends on a fall."""

    name = "cartpole"
    mjcf = Path(__file__).with_name("cartpole.xml")  # the default; a config's task.mjcf overrides it
    episode_length = 500  # control steps of 0.02 s: 10 s
    decimation = 2
    proprio_terms = (SensorTerm("cart_pos", noise_std=0.01),
                     SensorTerm("pole_angle", transform="sincos", noise_std=0.01),
                     PrevActionTerm())
    privileged_terms = (SensorTerm("cart_vel"), SensorTerm("pole_vel"), ParamsTerm())
    params = {
        "cart_mass": ParamSpec(1.0, 0.7, 1.5, "cart mass, kg"),
        "pole_mass": ParamSpec(0.1, 0.05, 0.2, "pole mass, kg"),
        "motor_strength": ParamSpec(1.0, 0.8, 1.2, "scale of the motor's gear"),
    }
    model_fields = ("body_mass", "body_inertia", "actuator_gear")

    MAX_ANGLE = 0.4  # rad
    MAX_X = 2.3  # m

    def bind(self, model: Any) -> None:
        """Record the body ids the pure functions index with."""
        self._cart = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, "cart")
        self._pole = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, "pole")

    def initial_state(self, rng: np.random.Generator, n: int, qpos0: np.ndarray,
                      nv: int) -> tuple[np.ndarray, np.ndarray]:
        """Near upright and at rest, as in the classic control task."""
        return rng.uniform(-0.05, 0.05, size=(n, 2)), rng.uniform(-0.05, 0.05, size=(n, 2))

    def apply_params(self, nominal: dict[str, Array], params: dict[str, Array], xp: Any) -> dict[str, Array]:
        """Masses (inertias scale with them) and the motor's gear per environment."""
        n = params["cart_mass"].shape[0]
        tile = lambda a: xp.broadcast_to(a, (n,) + a.shape)  # noqa: E731
        mass, inertia = tile(nominal["body_mass"]), tile(nominal["body_inertia"])
        for body, pname in ((self._cart, "cart_mass"), (self._pole, "pole_mass")):
            ratio = params[pname] / nominal["body_mass"][body]  # [B]
            mass = index_set(mass, (slice(None), body), params[pname])
            inertia = index_set(inertia, (slice(None), body), nominal["body_inertia"][body][None] * ratio[:, None])
        gear = index_set(tile(nominal["actuator_gear"]), (slice(None), 0, 0),
                         nominal["actuator_gear"][0, 0] * params["motor_strength"])
        return {"body_mass": mass, "body_inertia": inertia, "actuator_gear": gear}

    def reward(self, sim: SimArrays, action: Array, prev_action: Array, command: Array, xp: Any) -> Array:
        """+1 for every step the pole is up, minus a little for cart offset and effort."""
        return 1.0 - 0.01 * sim.qpos[:, 0] ** 2 - 0.001 * xp.sum(action**2, axis=-1)

    def terminated(self, sim: SimArrays, command: Array, xp: Any) -> Array:
        """The pole tipped beyond ``MAX_ANGLE`` or the cart reached the end of the rail."""
        return (xp.abs(sim.qpos[:, 1]) > self.MAX_ANGLE) | (xp.abs(sim.qpos[:, 0]) > self.MAX_X)
