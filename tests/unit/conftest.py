"""Unit tests share the service's metrics object: start each test with none recorded."""

from collections.abc import Iterator

import pytest

from service.telemetry import metrics


@pytest.fixture(autouse=True)
def no_metrics_left() -> Iterator[None]:
    metrics.clear_metrics()
    yield
    metrics.clear_metrics()
