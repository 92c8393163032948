"""The network pieces teacher and student share: activations by name and the MLP builder."""

from __future__ import annotations

from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {"elu": nn.ELU, "relu": nn.ReLU, "tanh": nn.Tanh}


def mlp(inp: int, hidden: list[int], activation: str, out: int | None = None) -> nn.Sequential:
    """Linear layers with ``activation`` after each hidden layer (and a linear output layer if ``out``)."""
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(inp, width), ACTIVATIONS[activation]()]
        inp = width
    if out is not None:
        layers.append(nn.Linear(inp, out))
    return nn.Sequential(*layers)
