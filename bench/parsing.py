"""Speed and memory of the domain's hot paths, as ratios against a plain-stdlib baseline in the same run.

* import processing (§5) of a 10 000-row file  vs  ``csv.reader`` over the same bytes;
* import-file extraction from a 5 MB message   vs  ``email.message_from_bytes`` of it;
* peak memory of both, from ``tracemalloc``, as a multiple of the input size;
* pathological messages (issue 10): each must end in ``RejectedMessage`` naming its parse bound,
  in under 2 s and under 64 MB peak - one PASS/FAIL line per budget. Their same-run baseline is the
  standard library reading just their first 2,000 lines, about as far as a bound lets us read (read
  whole, before the bounds: 156 s for 800,000 parts, 611 MB for 3 million TNEF values).
* streaming import processing (issue 10): a ~20 MB import of valid and invalid rows must peak at
  no more than 6x the file's size (``STREAM_BUDGET``) - one PASS/FAIL line.

``main()`` prints the lines and returns whether every budget was met (``bench.__main__`` sets the exit
status). The same budgets through a real poll, as RSS of its own process, are in ``bench.polls``.
"""

import base64
import csv
import io
import struct
import sys
import tracemalloc
from collections.abc import Callable
from email import message_from_bytes, policy

from bench.common import SRC, best_of, verdict

if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))

from devstack.samples import partner_mail
from domain.attachments import parse_message
from domain.bounds import BoundExceeded
from domain.shipments import process_import

ROWS = 10_000
TIME_BUDGET_S = 2.0
STREAM_ROWS = 270_000
STREAM_BUDGET = 6.0
MEMORY_BUDGET = 64 * 1024**2
TOP = b"From: orders@partner.example\r\nSubject: LetterShop import\r\nMIME-Version: 1.0\r\n"


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


def mixed_import_file(rows: int) -> bytes:
    """Valid rows and invalid ones: bad postcodes, weights, products, duplicates, quoted cells."""
    lines = ["reference;name;company;street;house_number;postcode;city;country;product;weight_g"]
    for n in range(rows):
        reference = f"R-{n - 1}" if n % 97 == 0 else f"R-{n}"  # a duplicate now and then
        postcode = "12" if n % 11 == 0 else "8001"
        weight = "0" if n % 7 == 0 else str(n % 2000 + 1)
        product = "EXPRESS" if n % 13 == 0 else ("A-POST", "B-POST", "REGISTERED")[n % 3]
        company = '"Muster ""Hans"" AG; Filiale"' if n % 5 == 0 else ""
        lines.append(
            f"{reference};Name {n};{company};Bahnhofstrasse;{n % 200};{postcode};Zürich;CH;{product};{weight}"
        )
    return ("\r\n".join(lines) + "\r\n").encode()


def streamed(rows: int) -> bool:
    """A ~20 MB import through process_import: peak memory growth against ``STREAM_BUDGET``."""
    data = mixed_import_file(rows)
    seconds = best_of(1, lambda: process_import("orders.csv", data, CountingSerials()))
    peak = peak_bytes(lambda: process_import("orders.csv", data, CountingSerials()))
    ratio = peak / len(data)
    print(
        f"{f'process_import, {len(data) / 1e6:.0f} MB streamed':<34} {seconds * 1000:8.1f} ms  "
        f"peak {ratio:5.1f}x file ({peak / 1e6:.1f} MB, {rows} rows)"
    )
    return verdict(ratio <= STREAM_BUDGET, f"process_import 20 MB: peak <= 6x file ({ratio:.1f}x)")


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


def empty_parts(count: int, boundary: bytes = b"b") -> bytes:
    head = TOP + b'Content-Type: multipart/mixed; boundary="' + boundary + b'"\r\n\r\n'
    return head + (b"--" + boundary + b"\r\n\r\n") * count + b"--" + boundary + b"--\r\n"


def deep(levels: int) -> bytes:
    nested = b"".join(
        f'Content-Type: multipart/mixed; boundary="b{n}"\r\n\r\n--b{n}\r\n'.encode() for n in range(levels)
    )
    return TOP + nested + b"Content-Type: text/csv; name=deep.csv\r\n\r\na;b\r\n"


def header_lines(count: int) -> bytes:
    return TOP + b"Received: from relay.example\r\n" * count + b"\r\nbody\r\n"


def tnef_attribute(level: int, attr_id: int, data: bytes) -> bytes:
    return struct.pack("<BII", level, attr_id, len(data)) + data + struct.pack("<H", sum(data) & 0xFFFF)


def winmail(*attributes: bytes) -> bytes:
    blob = struct.pack("<IH", 0x223E9F78, 1) + tnef_attribute(1, 0x00069007, struct.pack("<II", 1252, 0))
    blob += b"".join(attributes) + tnef_attribute(1, 0x00078008, b"IPM.Note\x00")
    return (
        TOP + b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n'
        b"Content-Type: application/ms-tnef; name=winmail.dat\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + base64.encodebytes(blob)
        + b"--b--\r\n"
    )


def pathological() -> list[tuple[str, bytes]]:
    values = 3_000_000  # PT_MV_SHORT: 2 bytes each, all present
    claim = struct.pack("<IHHI", 1, 0x1002, 0x0E20, values) + b"\x00" * (2 * values)
    return [
        ("800,000 empty MIME parts", empty_parts(800_000)),
        ("300,000 MIME parts", empty_parts(300_000, b"bb")),
        ("MIME nesting 10,000 deep", deep(10_000)),
        ("100,000 header lines", header_lines(100_000)),
        ("one 10 MB header line", TOP + b"X-Long: " + b"a" * 10_000_000 + b"\r\n\r\nbody\r\n"),
        ("TNEF claiming 3 million values", winmail(tnef_attribute(2, 0x00069005, claim))),
        ("TNEF of 700,000 attributes", winmail(*[tnef_attribute(2, 0x00018010, b"")] * 700_000)),
    ]


def rejected_by(raw: bytes) -> str:
    try:
        parse_message(raw, ["*.csv"])
    except BoundExceeded as exc:
        return exc.bound
    return "NOT REJECTED"


def first_parts(raw: bytes) -> bytes:
    """The baseline's input: the message cut after its first 2,000 lines (1,000 empty parts)."""
    end = 0
    for _ in range(2_000):
        end = raw.find(b"\n", end) + 1
        if not end:
            return raw
    return raw[:end]


def bounded(name: str, raw: bytes) -> bool:
    """One pathological message: time and peak against the budgets; True when both are met."""
    bound = rejected_by(raw)
    seconds = best_of(3, lambda: rejected_by(raw))
    peak = peak_bytes(lambda: rejected_by(raw))
    cut = first_parts(raw)
    base_s = best_of(3, lambda: message_from_bytes(cut, policy=policy.default))
    print(
        f"{name:<34} {len(raw) / 1e6:5.1f} MB  {seconds * 1000:8.1f} ms  peak {peak / 1e6:6.1f} MB   "
        f"rejected by {bound}  (baseline, stdlib on its first 2,000 lines: {base_s * 1000:.1f} ms)"
    )
    checks = [
        (bound != "NOT REJECTED", "rejected naming a bound", bound),
        (seconds < TIME_BUDGET_S, "parse under 2 s", f"{seconds:.2f} s"),
        (peak < MEMORY_BUDGET, "peak under 64 MB", f"{peak / 1024**2:.1f} MB"),
    ]
    lines = [verdict(ok, f"{name}: {budget} ({measured})") for ok, budget, measured in checks]  # every line
    return all(lines)


def main() -> bool:
    """Every figure of the domain code; True when every budget is met."""
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
    streaming_ok = streamed(STREAM_ROWS)
    print("pathological messages (issue 10): rejected at a parse bound, under 2 s and 64 MB each")
    results = [bounded(name, raw) for name, raw in pathological()]
    return all(results) and streaming_ok
