"""Speed and memory of the hot paths, as ratios against a plain-stdlib baseline in the same run.

* import processing (§5) of a 10 000-row file  vs  ``csv.reader`` over the same bytes;
* import-file extraction from a 5 MB message   vs  ``email.message_from_bytes`` of it;
* peak memory of both, from ``tracemalloc``, as a multiple of the input size.
"""

import csv
import io
import sys
import time
import tracemalloc
from collections.abc import Callable
from email import message_from_bytes, policy
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from devstack.samples import partner_mail
from domain.attachments import parse_message
from domain.shipments import process_import

ROWS = 10_000


class CountingSerials:
    def __init__(self) -> None:
        self.next = 1

    def allocate(self, count: int) -> range:
        block = range(self.next, self.next + count)
        self.next += count
        return block


def import_file(rows: int) -> bytes:
    lines = ["reference;name;street;postcode;city;country;product;weight_g"]
    lines += [f"R-{n};Name {n};Bahnhofstrasse {n};8001;Zürich;CH;A-POST;{n % 2000 + 1}" for n in range(rows)]
    return ("\r\n".join(lines) + "\r\n").encode()


def best_of(runs: int, work: Callable[[], object]) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return min(times)


def peak_bytes(work: Callable[[], object]) -> int:
    tracemalloc.start()
    work()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def compare(name: str, size: int, ours: Callable[[], object], baseline: Callable[[], object]) -> None:
    ours_s, base_s = best_of(5, ours), best_of(5, baseline)
    ours_peak, base_peak = peak_bytes(ours), peak_bytes(baseline)
    print(
        f"{name:<34} {ours_s * 1000:8.1f} ms  {ours_s / base_s:6.1f}x baseline   "
        f"peak {ours_peak / size:5.1f}x input ({base_peak / size:4.1f}x baseline)"
    )


def main() -> None:
    data = import_file(ROWS)
    compare(
        f"process_import, {ROWS} rows",
        len(data),
        lambda: process_import("orders.csv", data, CountingSerials()),
        lambda: list(csv.reader(io.StringIO(data.decode()), delimiter=";")),
    )
    raw = partner_mail(attachments=[("orders.csv", data * 8)])
    compare(
        f"parse_message, {len(raw) // 1_000_000} MB",
        len(raw),
        lambda: parse_message(raw, ["*.csv"]),
        lambda: message_from_bytes(raw, policy=policy.default),
    )


if __name__ == "__main__":
    main()
