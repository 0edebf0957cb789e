"""The ``lettershop`` console script (``pyproject.toml``): puts this checkout's ``src/`` (the
service, domain and adapters) and the checkout itself (the ``cli`` package, which lives beside
``src/`` so that no function's ``CodeUri`` reaches it) on the path, then runs ``cli.main``.

Only this one module is installed into the virtualenv (``pip install -e .``), so nothing of ``src/``
becomes importable for other programs of that interpreter: ``make build``'s artifact check proves
the functions import with their build folder alone, and would be fooled by a ``src/`` on the path.
"""

import sys
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[2]


def main() -> None:
    for folder in (CHECKOUT, CHECKOUT / "src"):
        if str(folder) not in sys.path:
            sys.path.insert(0, str(folder))
    from cli.main import run  # noqa: PLC0415  # only once src/ is on the path

    run()
