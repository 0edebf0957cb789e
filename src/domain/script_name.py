"""What a pre- or postscript may be called: the one rule, used by the channel model, the scripts
bucket's keys (``adapters.script_store.script_key``) and ``lettershop script``."""

MAX_SCRIPT_NAME = 100
SCRIPT_NAME_RULE = "a file name ending in .py, without folders"


def is_script_name(name: str) -> bool:
    """A base name (no ``/`` or ``\\``, not hidden) ending in ``.py``, printable, at most
    ``MAX_SCRIPT_NAME`` characters: it names one object under ``standard/`` or ``partners/<id>/``."""
    return (
        "/" not in name
        and "\\" not in name
        and not name.startswith(".")
        and name.endswith(".py")
        and len(name) <= MAX_SCRIPT_NAME
        and name.isprintable()
    )
