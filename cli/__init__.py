"""The operator's command line, ``lettershop`` (DESIGN §2): a driving adapter beside the handlers.

It calls the same service functions and adapters as the Lambda functions and is never imported by
them; its own dependencies (Typer, rich) are installed for operators and developers only
(``requirements-dev.txt``), not packaged into the functions.
"""
