"""The service's one Powertools logger, metrics and tracer: keys appended anywhere show on every line.

The Lambda sets ``POWERTOOLS_SERVICE_NAME`` and ``POWERTOOLS_METRICS_NAMESPACE``; the defaults
here are the same values, so a process that imports this module first (a test) gets them too.

The tracer is Powertools' ``Tracer``, made when the first invocation starts rather than at import:
making it imports the X-Ray SDK and, in Lambda, patches botocore, requests and http.client for
X-Ray (``patch_all``), which is most of a cold start's import otherwise (issue 11).
"""

import functools
import os
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "lettershop-email-channel")
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "LetterShop")

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)


class LazyTracer:
    """Powertools' ``Tracer``, made on first use: ``@tracer.capture_lambda_handler`` as usual.

    The first invocation makes the ``Tracer`` (X-Ray on in Lambda, off elsewhere or with
    ``POWERTOOLS_TRACE_DISABLED``, as Powertools decides) before the handler runs, so every AWS
    client the handler builds afterwards is traced; the handler then runs inside Powertools' own
    ``capture_lambda_handler`` (the ``## handler`` subsegment, ``ColdStart`` and ``Service``
    annotations, the response or the exception as metadata).
    """

    def __init__(self) -> None:
        self._tracer: Tracer | None = None

    @property
    def tracer(self) -> Tracer:
        """The Powertools tracer, made (and the libraries patched) on the first call."""
        if self._tracer is None:
            self._tracer = Tracer()
        return self._tracer

    def capture_lambda_handler(self, handler: Callable[..., Any]) -> Callable[..., Any]:
        """Powertools' ``capture_lambda_handler``, applied when the first invocation comes."""

        @functools.cache
        def traced() -> Callable[..., Any]:
            return self.tracer.capture_lambda_handler(handler)

        @functools.wraps(handler)
        def decorate(event: Any, context: Any, **kwargs: Any) -> Any:
            return traced()(event, context, **kwargs)

        return decorate


tracer = LazyTracer()
