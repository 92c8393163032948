"""Bounded aggregation buffer of (student input, teacher label) pairs, preallocated once."""

from __future__ import annotations

from typing import Any

import torch


class AggregationBuffer:
    """Fixed-capacity storage with FIFO or reservoir replacement, or on-policy (cleared each iteration).

    Every field is a preallocated tensor ``[capacity, ...]``; adding never allocates, so memory stays flat.
    """

    def __init__(self, capacity: int, shapes: dict[str, tuple[int, ...]], mode: str = "fifo",
                 generator: torch.Generator | None = None, device: torch.device | str = "cpu") -> None:
        if mode not in ("fifo", "reservoir", "on_policy"):
            raise ValueError(f"unknown buffer mode {mode!r}")
        self.capacity, self.mode, self.generator = capacity, mode, generator
        self.device = torch.device(device)
        self.data = {k: torch.zeros((capacity,) + tuple(s), device=self.device) for k, s in shapes.items()}
        self.size = 0  # valid samples
        self.cursor = 0  # next FIFO slot
        self.seen = 0  # samples ever offered (reservoir sampling)

    def __len__(self) -> int:
        return self.size

    def start_iteration(self) -> None:
        """Called before each collection; the on-policy regime forgets everything."""
        if self.mode == "on_policy":
            self.size = self.cursor = 0

    def add(self, **batch: torch.Tensor) -> None:
        """Add ``n`` samples; every field ``[n, ...]``."""
        n = next(iter(batch.values())).shape[0]
        if self.mode == "reservoir":
            idx = self._reservoir_slots(n)
            keep = idx >= 0
            for k, v in batch.items():
                self.data[k][idx[keep]] = v[keep]
            return
        if n >= self.capacity:  # only the newest fit
            batch = {k: v[-self.capacity:] for k, v in batch.items()}
            n = self.capacity
        idx = (self.cursor + torch.arange(n, device=self.device)) % self.capacity
        for k, v in batch.items():
            self.data[k][idx] = v
        self.cursor = int((self.cursor + n) % self.capacity)
        self.size = min(self.size + n, self.capacity)
        self.seen += n

    def _reservoir_slots(self, n: int) -> torch.Tensor:
        """Algorithm R (Vitter 1985): slot per offered sample, -1 where it is not kept."""
        slots = torch.full((n,), -1, dtype=torch.long, device=self.device)
        free = max(0, min(self.capacity - self.size, n))
        slots[:free] = torch.arange(self.size, self.size + free, device=self.device)
        self.size += free
        if free < n:
            seen = self.seen + torch.arange(free, n, device=self.device) + 1  # 1-based count of each later sample
            draw = (torch.rand(n - free, generator=self.generator, device=self.device) * seen).long()
            slots[free:] = torch.where(draw < self.capacity, draw, torch.full_like(draw, -1))
        self.seen += n
        return slots

    def sample_rows(self, batch_size: int) -> torch.Tensor:
        """Indices ``[batch_size]`` of stored rows, uniform with replacement."""
        if self.size == 0:
            raise RuntimeError("sampling from an empty buffer")
        return torch.randint(0, self.size, (batch_size,), generator=self.generator, device=self.device)

    def sample(self, batch_size: int) -> dict[str, torch.Tensor]:
        """A uniform minibatch (with replacement) of the stored rows."""
        idx = self.sample_rows(batch_size)
        return {k: v[idx] for k, v in self.data.items()}

    def state_dict(self) -> dict[str, Any]:
        """Contents and counters (for checkpoints): the stored samples only, not the empty capacity.

        A slice is a view, and ``torch.save`` writes a view's whole storage: the copy keeps a checkpoint of a
        quarter-full buffer a quarter of its capacity (made on the host, never a second copy on a GPU).
        """
        return {"data": {k: v[: self.size].to("cpu", copy=True) for k, v in self.data.items()}, "size": self.size,
                "cursor": self.cursor, "seen": self.seen}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.size, self.cursor, self.seen = state["size"], state["cursor"], state["seen"]
        for k, v in state["data"].items():
            self.data[k][: v.shape[0]] = v
