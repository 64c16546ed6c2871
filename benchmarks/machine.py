"""What a benchmark ran on (the CPU model, the load average) and where its report goes; shared by the scripts beside it."""

from __future__ import annotations

import json
import os
import platform
from typing import Any


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, else what :mod:`platform` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load() -> str:
    """The 1, 5 and 15 minute load averages, as ``a / b / c``."""
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def write_report(output: str, stem: str, report: dict[str, Any], text: str) -> None:
    """``output/<stem>.json`` (the report) and ``output/<stem>.md`` (``text``), then ``text`` printed."""
    os.makedirs(output, exist_ok=True)
    with open(os.path.join(output, f"{stem}.json"), "w", encoding="utf-8") as fh:
        json.dump(report, fh, indent=2, default=str)
    with open(os.path.join(output, f"{stem}.md"), "w", encoding="utf-8") as fh:
        fh.write(text)
    print("\n" + text)
