"""What every bench script shares: the machine's description and bench/RESULTS.md."""

from __future__ import annotations

import os
import platform
import re
import socket
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def update_results_md(key: str, title: str, body: str) -> None:
    """Replace (or add) this bench's section of bench/RESULTS.md, keeping the others."""
    path = HERE / "RESULTS.md"
    head = "# Benchmark results\n\nLatest figures of each bench script (`make bench`).\n"
    text = path.read_text() if path.exists() else head
    start, end = f"<!-- {key}:start -->", f"<!-- {key}:end -->"
    section = f"{start}\n## {title}\n\n{body}\n{end}"
    if start in text:
        text = re.sub(
            re.escape(start) + ".*?" + re.escape(end), lambda _: section, text, flags=re.S
        )
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    path.write_text(text)
