"""Which student ships: the best on validation episodes, and when to stop because it no longer improves."""

from __future__ import annotations

import copy
import math
from typing import Any

import torch


class BestStudent:
    """The student state that scored best on the validation episodes, and evaluations since it last improved.

    Selection uses validation episodes only (their own seed): the held-out episodes that the reported score comes
    from play no part in it, so that score is not flattered by the choice (docs/design.md decision 7).
    """

    def __init__(self, patience: int | None = None) -> None:
        self.patience = patience
        self.score = -math.inf
        self.iteration: int | None = None
        self.state: dict[str, torch.Tensor] | None = None
        self.stale = 0  # evaluations since the best

    def offer(self, score: float, iteration: int, student: torch.nn.Module) -> bool:
        """Keep ``student``'s weights if ``score`` beats the best so far; whether it did (NaN never does)."""
        if score > self.score:
            self.score, self.iteration, self.stale = score, iteration, 0
            self.state = copy.deepcopy(student.state_dict())
            return True
        self.stale += 1
        return False

    @property
    def plateaued(self) -> bool:
        """Whether ``patience`` evaluations in a row brought no better validation score."""
        return self.patience is not None and self.stale >= self.patience

    def state_dict(self) -> dict[str, Any]:
        """Tensors and plain data, for the run's checkpoint."""
        return {"score": self.score, "iteration": self.iteration, "state": self.state, "stale": self.stale}

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict`."""
        self.score, self.iteration, self.state, self.stale = (saved["score"], saved["iteration"], saved["state"],
                                                              saved["stale"])
