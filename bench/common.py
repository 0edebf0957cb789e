"""What every bench module shares: one PASS/FAIL line per budget, timing helpers, the repository root."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"


def verdict(ok: bool, text: str) -> bool:
    """Print one budget line, ``  PASS  <text>`` or ``  FAIL  <text>``; return ``ok``."""
    print(f"  {'PASS' if ok else 'FAIL'}  {text}", flush=True)
    return ok


def best_of(runs: int, work: Callable[[], object]) -> float:
    """The shortest of ``runs`` timings of ``work``, in seconds."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return min(times)


def timed(work: Callable[[], object]) -> float:
    """Seconds one call of ``work`` takes."""
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def interleaved_medians(
    runs: int, ours: Callable[[], float], baseline: Callable[[], float]
) -> tuple[float, float]:
    """Median seconds of ``ours`` and of ``baseline`` (each returns the seconds it measured), run
    alternately ``runs`` times each, so that drift of the machine (another process, a cache) hits
    both alike."""
    ours_s: list[float] = []
    base_s: list[float] = []
    for _ in range(runs):
        ours_s.append(ours())
        base_s.append(baseline())
    return statistics.median(ours_s), statistics.median(base_s)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def mb(size: float) -> str:
    return f"{size / 1e6:.1f} MB"
