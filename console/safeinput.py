"""Bounded parsing of everything a user sends as JSON or YAML.

One place decides what a document may cost before any of it is used: its size, how
deep it nests, how many values it expands to (YAML aliases can multiply a few hundred
bytes into gigabytes: each level of a "billion laughs" document costs ×N), and which
values are acceptable at all — no NaN or Infinity, no integer wider than 64 bits, no
unpaired UTF-16 surrogate (a database cannot store one), no impossible date. Every
refusal is an `UnsafeInput` naming the field, which the pages and the API answer with
a 400/422, never a 500.
"""

from __future__ import annotations

import json
import math
from typing import Any

import yaml

MAX_DEPTH = 64
MAX_NODES = 100_000
MAX_INT = 2**63 - 1
MAX_YAML_BYTES = 2 * 1024 * 1024


class UnsafeInput(ValueError):
    """Input refused before use; `field` names where (dotted path), `message` says why."""

    def __init__(self, message: str, field: str = "body"):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message

    @property
    def errors(self) -> dict[str, list[str]]:
        return {self.field: [self.message]}


def _where(field: str, path: list) -> str:
    return field + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)


def check_value(value: Any, field: str = "body", *, max_depth: int = MAX_DEPTH,
                max_nodes: int = MAX_NODES) -> Any:
    """Walk a parsed document (without recursion) and refuse what cannot be used."""
    stack: list[tuple[Any, list, int]] = [(value, [], 0)]
    nodes = 0
    while stack:
        item, path, depth = stack.pop()
        nodes += 1
        if nodes > max_nodes:
            raise UnsafeInput(f"has more than {max_nodes:,} values", field)
        if depth > max_depth:
            raise UnsafeInput(f"nests more than {max_depth} levels deep", _where(field, path[:3]))
        if isinstance(item, dict):
            for key, child in item.items():
                if isinstance(key, str):
                    _check_text(key, field, path)
                stack.append((child, [*path, str(key)[:40]], depth + 1))
        elif isinstance(item, list | tuple):
            stack.extend((child, [*path, i], depth + 1) for i, child in enumerate(item))
        elif isinstance(item, str):
            _check_text(item, field, path)
        elif isinstance(item, bool) or item is None:
            continue
        elif isinstance(item, float) and not math.isfinite(item):
            raise UnsafeInput(f"{item} is not a number (use a finite value)",
                              _where(field, path))
        elif isinstance(item, int) and not -MAX_INT - 1 <= item <= MAX_INT:
            raise UnsafeInput("is too large an integer (at most 19 digits)", _where(field, path))
    return value


def _check_text(text: str, field: str, path: list) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise UnsafeInput("contains an unpaired surrogate (\\ud800–\\udfff): not valid text",
                          _where(field, path)) from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:20]} is out of range")
    return value


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > 19 or not -MAX_INT - 1 <= int(text) <= MAX_INT:
        raise ValueError(f"{text[:20]}… is too large an integer (at most 19 digits)")
    return int(text)


def loads_json(raw: str | bytes, field: str = "body", *, max_depth: int = MAX_DEPTH,
               max_nodes: int = MAX_NODES) -> Any:
    """json.loads with every limit above; UnsafeInput naming the field otherwise."""
    try:
        if isinstance(raw, bytes):
            raw = raw.decode("utf-8")
        data = json.loads(raw, parse_constant=_no_constant, parse_float=_finite,
                          parse_int=_bounded_int)
    except UnicodeDecodeError:
        raise UnsafeInput("is not UTF-8 text", field) from None
    except RecursionError:
        raise UnsafeInput(f"nests more than {max_depth} levels deep", field) from None
    except json.JSONDecodeError as exc:
        raise UnsafeInput(f"is not valid JSON ({exc.msg} at line {exc.lineno}, column "
                          f"{exc.colno})", field) from None
    except ValueError as exc:  # from the hooks above
        raise UnsafeInput(str(exc), field) from None
    return check_value(data, field, max_depth=max_depth, max_nodes=max_nodes)


class _Loader(yaml.SafeLoader):
    """SafeLoader; the document is checked as a node graph before anything is built."""


def _check_nodes(root: yaml.Node, field: str, max_depth: int, max_nodes: int) -> None:
    """Expanded size and depth of a composed YAML graph, computed once per node (aliases
    share nodes, so a bomb is measured without being expanded); cycles are refused."""
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    open_: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        children: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        if done:
            open_.discard(key)
            size[key] = 1 + sum(size[id(c)] for c in children)
            depth[key] = 1 + max((depth[id(c)] for c in children), default=0)
            if size[key] > max_nodes:
                raise UnsafeInput(f"expands to more than {max_nodes:,} values (aliases that "
                                  f"repeat each other)", field)
            if depth[key] > max_depth:
                line = node.start_mark.line + 1 if node.start_mark else "?"
                raise UnsafeInput(f"nests more than {max_depth} levels deep (line {line})",
                                  field)
            continue
        if key in size:
            continue
        if key in open_:
            raise UnsafeInput("an alias refers to itself (a recursive document)", field)
        open_.add(key)
        stack.append((node, True))
        # a child that is an ancestor is popped while still open: the check above
        stack.extend((c, False) for c in children if id(c) not in size)


def load_yaml(text: str, field: str = "file", *, max_bytes: int = MAX_YAML_BYTES,
              max_depth: int = MAX_DEPTH, max_nodes: int = MAX_NODES) -> Any:
    """yaml.safe_load with every limit above; UnsafeInput naming the field otherwise."""
    if len(text.encode("utf-8", "surrogatepass")) > max_bytes:
        raise UnsafeInput(f"is larger than {max_bytes // 1024} KiB", field)
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_nodes(node, field, max_depth, max_nodes)
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise UnsafeInput(f"is not valid YAML{where}: {exc.problem or exc}", field) from None
    except yaml.YAMLError as exc:
        raise UnsafeInput(f"is not valid YAML: {exc}", field) from None
    except RecursionError:
        raise UnsafeInput(f"nests more than {max_depth} levels deep", field) from None
    except (ValueError, TypeError, OverflowError) as exc:
        # a value YAML's own types cannot build, e.g. the timestamp 2026-99-99
        raise UnsafeInput(f"has a value that cannot be read ({exc})", field) from None
    finally:
        loader.dispose()
    return check_value(data, field, max_depth=max_depth, max_nodes=max_nodes)


def digits(text: object) -> bool:
    """Only the ASCII digits 0-9, at least one. `str.isdigit()` is true for "²" and
    "١٢", and `int("²")` raises: every number read from a request or the environment
    is checked with this before int()."""
    return isinstance(text, str) and text.isascii() and text.isdigit()


def small_int(text: object, max_digits: int = 18) -> int | None:
    """An id or a number from a request: ASCII digits only, at most `max_digits` of them
    (a database integer), else None."""
    if not digits(text) or len(str(text)) > max_digits:
        return None
    return int(str(text))
