"""robodistill: privileged SB3 teachers distilled into proprioceptive students by DAgger, shipped as ONNX."""

from __future__ import annotations

__version__ = "0.1.0"

from robodistill.config import Config, load_config  # noqa: E402
from robodistill.env import BatchedEnv, make_env  # noqa: E402
from robodistill.tasks import register  # noqa: E402

__all__ = ["BatchedEnv", "Config", "__version__", "load_config", "make_env", "register"]
