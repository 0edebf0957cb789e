"""Build tooling run by the Makefile (not part of the Lambda package)."""
