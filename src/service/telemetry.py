"""The one Powertools logger of the service: keys appended anywhere (channel, message) show on every line."""

from aws_lambda_powertools import Logger

logger = Logger()
