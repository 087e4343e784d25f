"""YAML composed with line numbers, and load problems turned into a PolicyError."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import yaml

from keyguard.errors import PolicyError
from keyguard.policy.formats import _show

_Path = tuple[Any, ...]


@dataclass(slots=True)
class _Problem:
    file: str
    line: int | None
    key: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.key or '(top level)'}: {self.message}"


@dataclass(slots=True)
class _Source:
    """One loaded file: its name and where each key path sits in it."""

    file: str
    lines: dict[_Path, int]

    def line(self, path: Iterable[Any]) -> int | None:
        path = tuple(path)
        while True:
            for candidate in (path, tuple(str(p) for p in path)):
                if candidate in self.lines:
                    return self.lines[candidate]
            if not path:
                return None
            path = path[:-1]

    def problem(self, path: Iterable[Any], message: str) -> _Problem:
        path = tuple(path)
        return _Problem(self.file, self.line(path), _key_text(path), message)


def _key_text(path: _Path) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + _show(part)
    return out


def _compose_yaml(text: str, file: str) -> tuple[Any, dict[_Path, int], list[_Problem]]:
    """Parse YAML, returning (data, key path -> line, duplicate-key problems)."""
    loader: yaml.SafeLoader | None = None
    try:
        loader = yaml.SafeLoader(text)
        node = loader.get_single_node()
        if node is None:
            return None, {}, []
        lines, problems = _index_nodes(node, file)
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        col = f", column {mark.column + 1}" if mark else ""
        what = " ".join(p for p in (exc.context, exc.problem) if p)
        raise _error(
            [_Problem(file, line, "", f"invalid YAML{col}: {what}; fix the syntax there")]
        ) from None
    except yaml.YAMLError as exc:
        raise _error([_Problem(file, None, "", f"invalid YAML: {exc}")]) from None
    except RecursionError:
        raise _error([_Problem(file, None, "", "YAML nested too deeply")]) from None
    finally:
        if loader is not None:
            loader.dispose()
    return data, lines, problems


def _index_nodes(root: yaml.Node, file: str) -> tuple[dict[_Path, int], list[_Problem]]:
    lines: dict[_Path, int] = {(): root.start_mark.line + 1}
    problems: list[_Problem] = []
    seen: set[int] = set()
    stack: list[tuple[yaml.Node, _Path]] = [(root, ())]
    # Iterative, and each node once: aliases may make the tree a graph (or a cycle).
    while stack:
        node, path = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            first: dict[str, int] = {}
            for key_node, value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = key_node.value if isinstance(key_node, yaml.ScalarNode) else "?"
                line = key_node.start_mark.line + 1
                if isinstance(key_node, yaml.ScalarNode):
                    if key in first:
                        problems.append(
                            _Problem(
                                file,
                                line,
                                _key_text((*path, key)),
                                f"duplicate key (first defined at line {first[key]}); "
                                "keep one of them",
                            )
                        )
                    else:
                        first[key] = line
                lines.setdefault((*path, key), line)
                stack.append((value_node, (*path, key)))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                lines.setdefault((*path, index), item.start_mark.line + 1)
                stack.append((item, (*path, index)))
    return lines, problems


def _error(problems: list[_Problem]) -> PolicyError:
    if len(problems) == 1:
        message = str(problems[0])
    else:
        body = "\n".join(f"  {p}" for p in problems)
        message = f"{len(problems)} problems in the policy:\n{body}"
    err = PolicyError(message)
    first = problems[0]
    err.file, err.line, err.key = first.file, first.line, first.key  # type: ignore[attr-defined]
    err.problems = [  # type: ignore[attr-defined]
        {"file": p.file, "line": p.line, "key": p.key, "message": p.message} for p in problems
    ]
    return err
