"""Type-hint checks for handler arguments, compiled once per parameter.

``checker_for(hint)`` turns an annotation into ``(predicate, description)``
or None when there is nothing to check (``Any``, no annotation, or a typing
construct we do not check). The checks follow what msgpack can deliver:
``int`` excludes ``bool``; ``float`` accepts ``int`` (PEP 484's numeric
tower); ``list[X]`` / ``dict[K, V]`` check their items too; arrays arrive as
lists, so ``tuple`` and ``Sequence`` accept lists.
"""

from __future__ import annotations

import collections.abc
import types
import typing
from collections.abc import Callable
from typing import Any

Predicate = Callable[[Any], bool]
Checker = tuple[Predicate, str]


def _exact(*classes: type) -> Predicate:
    def check(value: Any) -> bool:
        return isinstance(value, classes) and not (isinstance(value, bool) and bool not in classes)

    return check


_SCALARS: dict[Any, Checker] = {
    int: (_exact(int), "int"),
    float: (_exact(float, int), "float"),
    bool: (_exact(bool), "bool"),
    str: (_exact(str), "str"),
    bytes: (_exact(bytes), "bytes"),
    type(None): (lambda value: value is None, "None"),
}
_SEQUENCES = {list, tuple, collections.abc.Sequence}
_MAPPINGS = {dict, collections.abc.Mapping}


_EXACT: dict[Predicate, frozenset[type]] = {
    check[0]: frozenset(types)
    for check, types in zip(
        _SCALARS.values(),
        [(int,), (float, int), (bool,), (str,), (bytes,), (type(None),)],
        strict=True,
    )
}


def exact_types(check: Checker) -> frozenset[type]:
    """Types whose values ``check`` accepts whatever they are (a value's
    exact type in this set passes without calling the predicate; an empty
    set for checks of containers, unions and the like)."""
    return _EXACT.get(check[0], frozenset())


def checker_for(hint: Any) -> Checker | None:
    """The check for one annotation, or None to accept anything."""
    if hint is Any or hint is object:
        return None
    if hint in _SCALARS:
        return _SCALARS[hint]
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Union or origin is types.UnionType:
        return _union([checker_for(arg) for arg in args])
    if origin is typing.Literal:
        allowed = frozenset(args)
        return (lambda value: value in allowed, f"one of {sorted(map(repr, args))}")
    if hint in _SEQUENCES or origin in _SEQUENCES:
        homogeneous = len(args) == 1 or (len(args) == 2 and args[1] is ...)
        item = checker_for(args[0]) if homogeneous else None
        return _container((list, tuple), item, None, "list")
    if hint in _MAPPINGS or origin in _MAPPINGS:
        key = checker_for(args[0]) if len(args) == 2 else None
        value = checker_for(args[1]) if len(args) == 2 else None
        return _container((dict,), key, value, "dict")
    if isinstance(hint, type) and origin is None:
        return (_exact(hint), hint.__name__)
    return None


def _union(checkers: list[Checker | None]) -> Checker | None:
    if any(c is None for c in checkers):
        return None
    predicates = [c[0] for c in checkers if c is not None]
    description = " or ".join(c[1] for c in checkers if c is not None)
    return (lambda value: any(p(value) for p in predicates), description)


def _container(
    classes: tuple[type, ...], first: Checker | None, second: Checker | None, name: str
) -> Checker:
    if first is None and second is None:
        return (lambda value: isinstance(value, classes), name)
    if classes == (dict,):
        key_ok = first[0] if first else (lambda _: True)
        value_ok = second[0] if second else (lambda _: True)
        return (
            lambda value: (
                isinstance(value, dict) and all(key_ok(k) and value_ok(v) for k, v in value.items())
            ),
            f"dict[{first[1] if first else 'Any'}, {second[1] if second else 'Any'}]",
        )
    assert first is not None
    item_ok = first[0]

    def check(value: Any) -> bool:
        return isinstance(value, (list, tuple)) and all(item_ok(item) for item in value)

    return (check, f"{name}[{first[1]}]")


__all__ = ["Checker", "checker_for", "exact_types"]
