"""What every local server of the stack has in common: start, stop, and use as a context manager."""

from __future__ import annotations

from types import TracebackType
from typing import Self


class LocalServer:
    """``with Server(...) as server:`` starts it and stops it, also when the body raises."""

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
