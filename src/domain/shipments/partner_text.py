"""Partner text in what we write back: export cells and reply lines are data, never formulas (DESIGN §6).

A spreadsheet runs a cell that starts with ``=``, ``+``, ``-`` or ``@`` (and, in some, with a tab or
a carriage return before one of them) as a formula. So no export cell and no reply line may start
with one of these characters taken from partner input, and partner text quoted in a message is
shortened to at most ``QUOTED_CHARS`` characters, then ``…``.
"""

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
QUOTED_CHARS = 40
ELLIPSIS = "…"  # also in Windows-1252 (0x85), so it survives a Windows-1252 export
_START_NAMES = {"\t": "a tab", "\r": "a carriage return"}


def starts_like_formula(value: str) -> bool:
    """The value starts with a character that makes a spreadsheet read it as a formula."""
    return value.startswith(FORMULA_STARTS)


def formula_start_name(value: str) -> str:
    """How a message names the first character of a formula-like value: ``'='`` or ``a tab``."""
    first = value[:1]
    return _START_NAMES.get(first, f"'{first}'")


def shorten(value: str, limit: int = QUOTED_CHARS) -> str:
    """Partner text fit for one line: control characters replaced by ``?``, at most ``limit``
    characters, then ``…``."""
    printable = "".join(char if char.isprintable() else "?" for char in value)
    return printable if len(printable) <= limit else printable[:limit] + ELLIPSIS


def quoted(value: str) -> str:
    """Partner text inside a message: shortened and in single quotes (so never at its start)."""
    return f"'{shorten(value)}'"


def leading(value: str) -> str:
    """Partner text (a file name) that begins a reply line: shortened, and quoted when it would
    start the line with a formula character."""
    shown = shorten(value)
    return f"'{shown}'" if starts_like_formula(shown) else shown


def as_data(cell: str) -> str:
    """A cell that cannot run as a formula: one starting with a formula character gets a leading
    ``'`` (the spreadsheet convention for "this is text"). A last guard: nothing we write should need it."""
    return f"'{cell}" if starts_like_formula(cell) else cell
