"""The service's one Powertools logger and metrics: keys appended anywhere show on every line.

The Lambda sets ``POWERTOOLS_SERVICE_NAME`` and ``POWERTOOLS_METRICS_NAMESPACE``; the defaults
here are the same values, so a process that imports this module first (a test) gets them too.
"""

import os

from aws_lambda_powertools import Logger, Metrics

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "lettershop-email-channel")
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "LetterShop")

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
