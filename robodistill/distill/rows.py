"""How one iteration's rollout is stored in the aggregation buffer, and how minibatches come back out of it.

The rollout holds ``T`` steps of ``B`` environments. Every minibatch the updates see has the same form whichever
rows the student's kind uses: ``obs [N, L, Dp]`` with the student's state before the first step ``state0 [N, *state]``, episode
``starts [N, L]`` and the teacher's labels ``[N, L, ...]``.

- :class:`SequenceRows` (recurrent students, ``L = bptt_length``): a buffer row is ``L`` consecutive steps with
  the hidden state at the first; a minibatch is whole rows.
- :class:`WindowRows` (windowed students, ``L = 1``): their state is the window of the last ``H`` observations,
  which the observations themselves already hold. A row is one environment's whole rollout: the window before it
  and its ``T`` observations, ``[H + T, Dp]``. Each sampled step's window is cut back out of its row, so a step
  costs ``Dp`` floats instead of ``H * Dp`` (quadruped: 10x less memory and checkpoint).
"""

from __future__ import annotations

import torch

from robodistill.distill.buffer import AggregationBuffer

LABELS = ("teacher_mean", "teacher_std", "teacher_value")


class SequenceRows:
    """Rows of ``length`` consecutive steps, the student's state stored at the first (truncated BPTT)."""

    def __init__(self, length: int) -> None:
        self.length = length
        self.steps_per_row = length  # the rollout records the student's state at every row's first step

    def row_shapes(self, step_shapes: dict[str, tuple[int, ...]], state_shape: tuple[int, ...]) -> dict:
        """Shape of each buffer field per row."""
        return {"state0": state_shape, **{k: (self.length, *s) for k, s in step_shapes.items()}}

    def pack(self, rollout: dict[str, torch.Tensor], state0: torch.Tensor) -> dict[str, torch.Tensor]:
        """``rollout [B, T, ...]`` and ``state0 [B, T / L, ...]`` as ``B * T / L`` rows (views)."""
        rows = {"state0": state0.flatten(0, 1)}
        for key, x in rollout.items():
            b, t = x.shape[:2]
            rows[key] = x.reshape(b, t // self.length, self.length, *x.shape[2:]).flatten(0, 1)  # [B*T/L, L, ...]
        return rows

    def sample(self, buffer: AggregationBuffer, batch_size: int) -> dict[str, torch.Tensor]:
        """About ``batch_size`` steps as whole sequences."""
        return buffer.sample(max(1, batch_size // self.length))


class WindowRows:
    """Rows of one environment's rollout, ``ext = [window before it; its T observations]``; windows cut at sampling."""

    def __init__(self, history: int, steps: int) -> None:
        self.history, self.steps = history, steps
        self.steps_per_row = steps  # only the window before the rollout is recorded

    def row_shapes(self, step_shapes: dict[str, tuple[int, ...]], state_shape: tuple[int, ...]) -> dict:
        """Shape of each buffer field per row."""
        obs_dim = step_shapes["obs"][0]
        shapes = {"ext": (self.history + self.steps, obs_dim), "starts": (self.steps,), "last_start": (self.steps,)}
        return {**shapes, **{k: (self.steps, *step_shapes[k]) for k in LABELS}}

    def pack(self, rollout: dict[str, torch.Tensor], state0: torch.Tensor) -> dict[str, torch.Tensor]:
        """``rollout [B, T, ...]`` and the windows before it ``state0 [B, 1, H, Dp]`` as ``B`` rows."""
        starts = rollout["starts"]  # [B, T]
        step = torch.arange(self.steps, device=starts.device).expand_as(starts)
        last_start = torch.cummax(torch.where(starts.bool(), step, -1), dim=1).values  # [B, T], -1: none yet
        return {"ext": torch.cat([state0[:, 0], rollout["obs"]], dim=1), "starts": starts,
                "last_start": last_start.to(starts.dtype), **{k: rollout[k] for k in LABELS}}

    def sample(self, buffer: AggregationBuffer, batch_size: int) -> dict[str, torch.Tensor]:
        """``batch_size`` uniformly drawn steps, each with the window the student saw before it."""
        rows = buffer.sample_rows(batch_size)  # [N]
        step = torch.randint(0, self.steps, (batch_size,), generator=buffer.generator, device=buffer.device)  # [N]
        return self.gather(buffer, rows, step)

    def gather(self, buffer: AggregationBuffer, rows: torch.Tensor, step: torch.Tensor) -> dict[str, torch.Tensor]:
        """Step ``step [N]`` of buffer rows ``rows [N]``, each with the window before it, as a minibatch."""
        h, t, data = self.history, self.steps, buffer.data
        n, obs_dim = rows.shape[0], data["ext"].shape[-1]
        at = (rows * (h + t) + step)[:, None] + torch.arange(h + 1, device=buffer.device)  # [N, H + 1] into ext
        seen = data["ext"].view(-1, obs_dim).index_select(0, at.view(-1)).view(n, h + 1, obs_dim)  # window, newest
        flat = rows * t + step  # [N] into the per-step fields

        def pick(key: str) -> torch.Tensor:  # [capacity, T, ...] -> [N, 1, ...]
            return data[key].flatten(0, 1).index_select(0, flat).unsqueeze(1)

        # entries from before the step's episode began are zeros, as the student's reset state had them
        last = pick("last_start")[:, 0].long()  # [N]
        first_kept = torch.where(last >= 0, h + last, 0)  # ext index of the oldest entry of this episode
        kept = (step[:, None] + torch.arange(h, device=buffer.device)) >= first_kept[:, None]  # [N, H]
        batch = {"obs": seen[:, h:], "state0": seen[:, :h] * kept[..., None], "starts": pick("starts")}
        return {**batch, **{k: pick(k) for k in LABELS}}
