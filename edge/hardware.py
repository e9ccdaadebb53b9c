"""Where the hardware profiles (`hardware/<kind>/*.toml`, data, no code) are found."""

from __future__ import annotations

import sys
from pathlib import Path


def search_path(kind: str) -> list[Path]:
    """Directories holding shipped profiles of `kind` ("meters", "chargers"): the source
    tree, then the copy installed under <prefix>/share/edge."""
    here = Path(__file__).resolve().parents[1] / "hardware" / kind
    installed = Path(sys.prefix) / "share" / "edge" / "hardware" / kind
    return [d for d in (here, installed) if d.is_dir()]


def shipped(kind: str) -> dict[str, Path]:
    """Every shipped profile of `kind` by stem (the first directory of the path wins)."""
    found: dict[str, Path] = {}
    for directory in search_path(kind):
        for path in sorted(directory.glob("*.toml")):
            found.setdefault(path.stem, path)
    return found


def locate(kind: str, name: str) -> Path | None:
    """A profile named by stem (`eastron-sdm630`) or by a path to a `.toml` file; None
    when no shipped profile has that stem."""
    if name.endswith(".toml") or "/" in name:
        return Path(name)
    return shipped(kind).get(name)
