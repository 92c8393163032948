"""The teacher's labels for the states the student visits, computed beside the student's own forward pass."""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from robodistill.env import BatchedEnv
    from robodistill.teacher import Teacher

Labels = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # teacher mean [B, A], std [B, A], value [B]

# A helper thread pays once the teacher's forward pass outweighs handing the batch over (tens of µs). DAgger loop,
# B=64, labelling on a helper thread against in turn: pendulum (0.6M multiply-adds in the teacher's layers)
# 0.97-0.99x, hopper (9M) 1.02x, quadruped (28M) 1.05-1.06x.
MIN_TEACHER_MACS = 2_000_000


class Labeler:
    """The teacher's ``(mean, std, value)`` for batches of privileged observations, optionally on a helper thread.

    While the C engine collects, torch runs each forward pass on one thread (``BatchedEnv.torch_single_threaded``)
    and the physics threads wait for the next action, so one core idles. With ``concurrent``, the teacher labels
    a batch on a helper thread while the caller runs the student's forward pass on the other core. The helper
    runs torch on one thread as well, so the labels are bit-identical to computing them in turn.
    """

    def __init__(self, teacher: "Teacher", with_value: bool, concurrent: bool) -> None:
        self.teacher, self.with_value = teacher, with_value
        self._pool = (ThreadPoolExecutor(1, thread_name_prefix="teacher-labels", initializer=torch.set_num_threads,
                                         initargs=(1,)) if concurrent else None)

    @staticmethod
    def worth_a_thread(teacher: "Teacher", env: "BatchedEnv") -> bool:
        """Whether collecting on ``env`` leaves torch a second core, and the teacher is large enough to use it."""
        if not env.physics_threads_share_torch_cores or torch.get_num_threads() < 2:
            return False
        macs = env.num_envs * sum(m.weight.numel() for m in teacher.modules() if isinstance(m, torch.nn.Linear))
        return macs >= MIN_TEACHER_MACS

    def _labels(self, privileged: torch.Tensor) -> Labels:
        with torch.no_grad():  # grad mode is per thread
            mean, std = self.teacher(privileged)
            value = self.teacher.value(privileged) if self.with_value else torch.zeros_like(mean[:, 0])
        return mean, std, value

    def submit(self, privileged: torch.Tensor) -> "Future[Labels]":
        """Start labelling ``privileged [B, Dq]``; ``.result()`` gives the labels (at once when not concurrent)."""
        if self._pool is not None:
            return self._pool.submit(self._labels, privileged)
        done: Future[Labels] = Future()
        done.set_result(self._labels(privileged))
        return done

    def close(self) -> None:
        """Stop the helper thread."""
        if self._pool is not None:
            self._pool.shutdown()
