"""One warm state (issue 18): no module in ``src/`` keeps state of its own between invocations.

Every per-instance cache lives in ``app.warm.WarmState``. This test reads every module of ``src/``
with ``ast`` and finds what could hold state: module-level names bound to anything but a plain
constant, ``@cache``/``@lru_cache`` anywhere, and ``global`` statements. Constant tables (an
UPPER_CASE name bound to a dict, set or list display that no code in ``src/`` changes) pass on their
own; everything else must be in ``ALLOWED`` below, with the reason it is not state. A new
module-level cache fails here: give it to the warm state instead.
"""

import ast
from collections.abc import Iterator
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"

ALLOWED = {
    "app.root:WARM": "the one warm state itself, made once per process by the composition root",
    "adapters.archive:_transfer_config": "@cache: boto3's TransferConfig, an immutable setting made by "
    "the first large message (boto3 is not imported at cold start)",
    "adapters.channels:_deserializer": "@cache: boto3's TypeDeserializer, stateless, made by the first "
    "item read (boto3 is not imported at cold start)",
    "adapters.process_guard:become_subreaper": "@cache: the one prctl(PR_SET_CHILD_SUBREAPER) of the "
    "process; an attribute of the process that cannot be undone, so it is done once",
    "domain.senders:_normalized_pattern": "@lru_cache: a pure function (allow-list entry -> its "
    "normalised form) memoised; the same input always gives the same output",
    "domain.senders:_IDNA_DOTS": "a str.maketrans table, read only",
    "domain.shipments.tariff:default_tariff": "@cache: the tariff packaged with the code (tariff.json), "
    "read once, immutable",
    "handlers.schedules:tracer": "Powertools' Tracer of the schedule sync: no state between invocations",
    "handlers.schedules:processor": "Powertools' BatchProcessor: each process_partial_response starts "
    "its batch afresh",
    "service.telemetry:logger": "Powertools' Logger: the keys of an invocation are cleared by "
    "inject_lambda_context(clear_state=True)",
    "service.telemetry:metrics": "Powertools' Metrics: flushed at the end of every invocation (log_metrics)",
    "service.telemetry:tracer": "the lazy Powertools Tracer: made by the first invocation, no poll state",
    "service.telemetry:traced": "@cache: the tracer's decorator of a function, made once per function",
}

CACHES = {"cache", "lru_cache", "functools.cache", "functools.lru_cache"}
# Calls whose result cannot be changed (a frozenset, a compiled pattern, a type variable, a string).
IMMUTABLE_CALLS = {"frozenset", "re.compile", "tuple", "TypeVar", "os.environ.get", "str", "int", "timedelta"}
MUTATORS = {"add", "update", "append", "extend", "insert", "pop", "popitem", "clear", "setdefault", "remove"}
TABLES = (ast.Dict, ast.Set, ast.List, ast.DictComp, ast.SetComp, ast.ListComp)


def modules(src: Path) -> Iterator[tuple[str, ast.Module]]:
    for path in sorted(src.rglob("*.py")):
        name = ".".join(path.relative_to(src).with_suffix("").parts).removesuffix(".__init__")
        yield name, ast.parse(path.read_text(encoding="utf-8"))


def dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


def constant(node: ast.expr) -> bool:
    """A value that cannot change: a literal, a tuple of them, an expression of them, a name or a
    type (another constant, an enum member, ``Literal[...]``), or an immutable call."""
    if isinstance(node, ast.Tuple):
        return all(constant(element) for element in node.elts)
    if isinstance(node, ast.BinOp):
        return constant(node.left) and constant(node.right)
    if isinstance(node, ast.UnaryOp):
        return constant(node.operand)
    if isinstance(node, ast.Call):
        return dotted(node.func) in IMMUTABLE_CALLS
    return isinstance(node, ast.Constant | ast.JoinedStr | ast.Name | ast.Attribute | ast.Subscript)


def top_level(body: list[ast.stmt]) -> Iterator[tuple[str, ast.expr]]:
    """``(name, value)`` of every binding at module level (inside ``if``/``try`` blocks too)."""
    for statement in body:
        if isinstance(statement, ast.If | ast.Try):
            yield from top_level(statement.body)
            yield from top_level(statement.orelse)
            for handler in getattr(statement, "handlers", []):
                yield from top_level(handler.body)
        elif isinstance(statement, ast.Assign):
            for target in statement.targets:
                yield from ((name, statement.value) for name in _names(target))
        elif isinstance(statement, ast.AnnAssign) and statement.value is not None:
            yield from ((name, statement.value) for name in _names(statement.target))


def _names(target: ast.expr) -> list[str]:
    if isinstance(target, ast.Tuple):
        return [name for element in target.elts for name in _names(element)]
    name = dotted(target)
    return [name] if name is not None else []


def changed_names(tree: ast.Module) -> set[str]:
    """Names some function changes in place: ``x[k] = v``, ``del x[k]``, ``x.update(...)``, ``x |= y``."""
    changed: set[str] = set()
    for function in (n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)):
        for node in ast.walk(function):
            if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Store | ast.Del):
                changed.add(dotted(node.value) or "")
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                if node.func.attr in MUTATORS:
                    changed.add(dotted(node.func.value) or "")
            elif isinstance(node, ast.AugAssign):
                changed.add(dotted(node.target) or "")
    return changed


def module_state(src: Path) -> set[str]:
    """``module:name`` of everything in ``src`` that could keep state between invocations."""
    trees = dict(modules(src))
    changed = set().union(*(changed_names(tree) for tree in trees.values()))
    found: set[str] = set()
    for module, tree in trees.items():
        for name, value in top_level(tree.body):
            if name == "__all__" or constant(value):
                continue
            table = isinstance(value, TABLES) and name.lstrip("_").isupper()
            if table and name not in changed:
                continue
            found.add(f"{module}:{name}")
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                for decorator in node.decorator_list:
                    if dotted(decorator.func if isinstance(decorator, ast.Call) else decorator) in CACHES:
                        found.add(f"{module}:{node.name}")
            elif isinstance(node, ast.Global):
                found.update(f"{module}:{name}" for name in node.names)
    return found


def test_src_keeps_no_module_level_state_beyond_the_allowed() -> None:
    assert module_state(SRC) == set(ALLOWED)


def test_the_scan_finds_a_new_module_level_cache(tmp_path: Path) -> None:
    (tmp_path / "adapters").mkdir()
    (tmp_path / "adapters" / "tokens.py").write_text(
        "from functools import cache, lru_cache\n"
        "import functools\n"
        "LIMITS = {'a': 1}\n"  # a constant table: passes
        "SEEN = {}\n"  # an upper-case table that a function fills: state
        "_cache: dict[str, str] = {}\n"
        "DEFAULT = Store()\n"
        "_lock, _count = make(), 0\n"
        "MAX = 3 * 60\n"
        "@cache\n"
        "def client(name): ...\n"
        "@functools.lru_cache(maxsize=1)\n"
        "def settings(): ...\n"
        "def remember(key):\n"
        "    global _count\n"
        "    SEEN[key] = True\n"
    )

    assert module_state(tmp_path) == {
        "adapters.tokens:SEEN",
        "adapters.tokens:_cache",
        "adapters.tokens:DEFAULT",
        "adapters.tokens:_lock",
        "adapters.tokens:_count",
        "adapters.tokens:client",
        "adapters.tokens:settings",
    }
