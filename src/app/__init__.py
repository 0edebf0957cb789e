"""The composition root (DESIGN §2): the one place that builds the real ports of a poll, a dry run,
a replay and a channel check, used by both Lambda handlers and the operator's command line."""
