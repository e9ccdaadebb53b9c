"""Where the config file is; no pydantic here, so client commands start fast."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_PATH = Path("/etc/edge/edge.toml")


def resolve_path(path: Path | None) -> Path | None:
    """--config, else $EDGE_CONFIG, else /etc/edge/edge.toml if it exists, else None."""
    if path is not None:
        return path
    env = os.environ.get("EDGE_CONFIG")
    if env:
        return Path(env)
    return DEFAULT_PATH if DEFAULT_PATH.is_file() else None
