"""Finding code that reads secrets straight from the environment, with the keyguard
replacement for each place.

Python files are parsed with ``ast`` (nothing is executed or imported). Reported:
``os.getenv("X")``, ``os.environ["X"]``, ``os.environ.get("X")`` (and the same through
``from os import getenv, environ``) for names that look like secrets;
``load_dotenv()``/``dotenv_values()`` in a file that does so; and string literals that
match a redaction rule (a hard-coded key), by the scanner (masked, never the value).
"""

from __future__ import annotations

import ast
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from keyguard.hygiene.files import DEFAULT_MAX_BYTES, Skipped, display_path, read_text, walk
from keyguard.hygiene.scan import Scanner

__all__ = ["MigrateReport", "Suggestion", "find_in_source", "migrate_paths"]

# Secret name (substring, upper case) -> the guarded client that replaces the raw SDK use.
SDK_HINTS: dict[str, str] = {
    "GEMINI": "client = keyguard.integrations.gemini.client(store, policy)  "
    "# instead of genai.Client(api_key=...)",
    "GOOGLE": "client = keyguard.integrations.gemini.client(store, policy)  "
    "# instead of genai.Client(api_key=...)",
    "E2B": "keyguard.integrations.e2b.Sandbox(...)  # instead of e2b_code_interpreter.Sandbox",
    "N8N": "keyguard.integrations.n8n.N8nClient(...)  # instead of raw HTTP with X-N8N-API-KEY",
    "GITHUB": "keyguard.edge.guarded_client(store, policy)  # the policy injects the header "
    "for api.github.com",
}
GENERIC_CLIENT = (
    "keyguard.edge.guarded_client(store, policy)  # send store.get(NAME).placeholder; the "
    "edge injects the value for allowed hosts"
)


@dataclass(frozen=True, slots=True)
class Suggestion:
    path: str
    line: int
    column: int
    kind: str  # "getenv" | "environ" | "environ.get" | "load_dotenv" | "literal"
    name: str  # the secret name (or rule id for a literal)
    found: str  # what was found, without any value
    replacement: str
    client: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class MigrateReport:
    suggestions: list[Suggestion] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    files_scanned: int = 0

    @property
    def exit_code(self) -> int:
        if self.errors:
            return 2
        return 1 if self.suggestions else 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "suggestions": [s.to_dict() for s in self.suggestions],
            "errors": self.errors,
            "skipped": [s.to_dict() for s in self.skipped],
            "files_scanned": self.files_scanned,
        }


def _client_for(name: str) -> str:
    upper = name.upper()
    return next((hint for word, hint in SDK_HINTS.items() if word in upper), GENERIC_CLIENT)


class _Visitor(ast.NodeVisitor):
    def __init__(self, is_secret: Any) -> None:
        self.is_secret = is_secret
        self.os_names = {"os"}  # aliases of the os module
        self.getenv_names: set[str] = set()  # from os import getenv [as g]
        self.environ_names: set[str] = set()  # from os import environ [as e]
        self.dotenv_calls: set[str] = {"load_dotenv", "dotenv_values"}
        self.hits: list[tuple[ast.AST, str, str]] = []
        self.dotenv_hits: list[tuple[ast.AST, str]] = []

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.name == "os":
                self.os_names.add(alias.asname or "os")

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        for alias in node.names:
            if node.module == "os" and alias.name == "getenv":
                self.getenv_names.add(alias.asname or alias.name)
            elif node.module == "os" and alias.name == "environ":
                self.environ_names.add(alias.asname or alias.name)
            elif node.module == "dotenv" and alias.name in ("load_dotenv", "dotenv_values"):
                self.dotenv_calls.add(alias.asname or alias.name)

    def _is_environ(self, node: ast.AST) -> bool:
        return self._is_os_attr(node, "environ", self.environ_names)

    def _is_getenv(self, func: ast.AST) -> bool:
        return self._is_os_attr(func, "getenv", self.getenv_names)

    def _is_os_attr(self, node: ast.AST, attr: str, imported_as: set[str]) -> bool:
        """``os.<attr>`` (through any alias of ``os``) or a name ``<attr>`` was imported as."""
        if isinstance(node, ast.Name):
            return node.id in imported_as
        return (
            isinstance(node, ast.Attribute)
            and node.attr == attr
            and isinstance(node.value, ast.Name)
            and node.value.id in self.os_names
        )

    def _secret_arg(self, node: ast.AST | None) -> str | None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if self.is_secret(node.value):
                return node.value
        return None

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        first = node.args[0] if node.args else None
        if self._is_getenv(func):
            if (name := self._secret_arg(first)) is not None:
                self.hits.append((node, "getenv", name))
        elif (
            isinstance(func, ast.Attribute)
            and func.attr in ("get", "setdefault", "pop")
            and self._is_environ(func.value)
        ):
            if (name := self._secret_arg(first)) is not None:
                self.hits.append((node, f"environ.{func.attr}", name))
        else:
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if called in self.dotenv_calls:
                self.dotenv_hits.append((node, called))
        self.generic_visit(node)

    def visit_Subscript(self, node: ast.Subscript) -> None:
        if self._is_environ(node.value) and isinstance(node.ctx, ast.Load):
            if (name := self._secret_arg(node.slice)) is not None:
                self.hits.append((node, "environ", name))
        self.generic_visit(node)


_FOUND = {
    "getenv": 'os.getenv("{name}")',
    "environ": 'os.environ["{name}"]',
    "environ.get": 'os.environ.get("{name}")',
    "environ.setdefault": 'os.environ.setdefault("{name}", ...)',
    "environ.pop": 'os.environ.pop("{name}")',
}


def _assigned_name(tree: ast.AST, line: int) -> str | None:
    """The variable a literal on ``line`` is assigned to (``GEMINI_KEY = "AIza..."``)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign | ast.AnnAssign) and node.lineno <= line <= (
            node.end_lineno or node.lineno
        ):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                if isinstance(t, ast.Name):
                    return t.id.upper()
                if isinstance(t, ast.Attribute):
                    return t.attr.upper()
    return None


def find_in_source(
    text: str, path: str, *, scanner: Scanner | None = None, is_secret: Any = None
) -> list[Suggestion]:
    """Suggestions for one Python source. Raises SyntaxError when it does not parse."""
    if is_secret is None:
        from keyguard.validate import looks_like_secret_name as is_secret
    tree = ast.parse(text, filename=path)
    v = _Visitor(is_secret)
    v.visit(tree)
    out: list[Suggestion] = []
    for node, kind, name in v.hits:
        out.append(
            Suggestion(
                path,
                node.lineno,
                node.col_offset + 1,
                kind,
                name,
                _FOUND[kind].format(name=name),
                f'store.get("{name}")  # a Secret; .reveal() only at the wire, or '
                f"pass .placeholder to a guarded client",
                _client_for(name),
            )
        )
    if v.hits:
        # load_dotenv + os.getenv is the pattern being replaced: the store reads .env
        # (and .env.local) itself, without copying values into os.environ.
        for node, called in v.dotenv_hits:
            out.append(
                Suggestion(
                    path,
                    node.lineno,
                    node.col_offset + 1,
                    "load_dotenv",
                    called,
                    f"{called}(...)",
                    'store = keyguard.SecretStore.from_policy("policies/")  '
                    "# reads .env and .env.local; remove this call",
                )
            )
    scanner = scanner or Scanner()
    for f in scanner.scan_text(text, path):
        name = _assigned_name(tree, f.line) or f.rule.upper().replace("-", "_")
        out.append(
            Suggestion(
                path,
                f.line,
                f.column,
                "literal",
                f.rule,
                f"hard-coded {f.rule} {f.masked}",
                f'move the value to .env as {name}=..., rotate it, and use store.get("{name}")',
                _client_for(f.rule.upper() + " " + name),
            )
        )
    out.sort(key=lambda s: (s.line, s.column))
    return out


def migrate_paths(paths: list[Path], *, max_bytes: int = DEFAULT_MAX_BYTES) -> MigrateReport:
    report = MigrateReport()
    scanner = Scanner(max_bytes=max_bytes)
    try:
        files = [p for p in walk(paths) if p.suffix in (".py", ".pyi") or p in paths]
    except OSError as exc:
        report.errors.append(str(exc))
        return report
    for path in files:
        shown = display_path(path)
        text = read_text(path, max_bytes=max_bytes, shown=shown)
        if isinstance(text, Skipped):
            report.skipped.append(text)
            continue
        report.files_scanned += 1
        try:
            report.suggestions.extend(find_in_source(text, shown, scanner=scanner))
        except SyntaxError as exc:
            # Reported, not fatal: a tree may hold Python 2 files or templates.
            report.skipped.append(
                Skipped(shown, "not valid Python", f"line {exc.lineno}: {exc.msg}")
            )
    return report
