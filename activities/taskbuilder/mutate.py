"""Procedural bugs for `entropo tasks build`, in the spirit of SWE-smith's procedural modifiers.

Finds AST-level mutation sites in real Python source and describes each as a byte-range replacement of
the original text, so that applying one changes a few characters and keeps the file's formatting (the
gold patch that undoes it is then a one-hunk diff):

  flip_comparison        ==/!=, </>, <=/>=, in/not in, is/is not
  off_by_one             a bound moved by one: < and <=, > and >=; a slice bound b -> b + 1
  drop_branch            an `if` without `else` removed (the block keeps at least one statement)
  swap_arguments         the first two positional arguments of a call swapped
  change_constant        an integer literal n -> n + 1
  invert_boolean_return  `return <boolean expr>` -> `return not (<boolean expr>)`; True <-> False

Only code inside functions is mutated, never docstrings. Every site is checked: the mutated file must
parse and its AST must differ. Sites come out in source order, so a seeded shuffle of them is
deterministic.

Also removes test functions from test files (the FAIL_TO_PASS tests leave the base commit, as in
SWE-bench, and the test patch restores them).

Command line (JSON on stdout):
  mutate.py sites FILE...                 every mutation site of the files (paths as given)
  mutate.py remove-tests FILE NAME...     FILE's text without the named test functions / methods
"""

from __future__ import annotations

import ast
import json
import sys
from dataclasses import asdict, dataclass

KINDS = (
    "flip_comparison",
    "off_by_one",
    "drop_branch",
    "swap_arguments",
    "change_constant",
    "invert_boolean_return",
)

FLIPS = {
    ast.Eq: (ast.NotEq, "!="),
    ast.NotEq: (ast.Eq, "=="),
    ast.Lt: (ast.Gt, ">"),
    ast.Gt: (ast.Lt, "<"),
    ast.LtE: (ast.GtE, ">="),
    ast.GtE: (ast.LtE, "<="),
    ast.In: (ast.NotIn, "not in"),
    ast.NotIn: (ast.In, "in"),
    ast.Is: (ast.IsNot, "is not"),
    ast.IsNot: (ast.Is, "is"),
}
BOUNDS = {ast.Lt: "<=", ast.LtE: "<", ast.Gt: ">=", ast.GtE: ">"}
OP_TEXT = {
    ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.Gt: ">", ast.LtE: "<=", ast.GtE: ">=",
    ast.In: "in", ast.NotIn: "not in", ast.Is: "is", ast.IsNot: "is not",
}


@dataclass
class Site:
    kind: str
    file: str
    #: qualified name as Python's co_qualname spells it (`Class.method`, `outer.<locals>.inner`)
    function: str
    line: int
    #: byte offsets into the file's UTF-8 text
    start: int
    end: int
    replacement: str
    description: str


class _Offsets:
    def __init__(self, data: bytes):
        self.data = data
        self.line_starts = [0]
        for i, b in enumerate(data):
            if b == 0x0A:
                self.line_starts.append(i + 1)

    def at(self, line: int, col: int) -> int:
        return self.line_starts[line - 1] + col

    def span(self, node: ast.AST) -> tuple[int, int]:
        return self.at(node.lineno, node.col_offset), self.at(node.end_lineno, node.end_col_offset)

    def text(self, start: int, end: int) -> str:
        return self.data[start:end].decode("utf-8")


def _is_docstring(node: ast.AST, parent: ast.AST) -> bool:
    body = getattr(parent, "body", None)
    return (
        isinstance(body, list) and body and body[0] is node and isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
    )


def _booleanish(node: ast.AST) -> bool:
    if isinstance(node, (ast.Compare, ast.BoolOp)):
        return True
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return True
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        return node.func.id in ("isinstance", "issubclass", "hasattr", "callable", "all", "any", "bool")
    return False


class _Finder(ast.NodeVisitor):
    def __init__(self, file: str, data: bytes):
        self.file = file
        self.o = _Offsets(data)
        self.scope: list[str] = []
        self.in_function = 0
        self.sites: list[Site] = []
        self.skip: set[int] = set()

    # scopes -------------------------------------------------------------------------------------
    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        for d in node.decorator_list:
            self.visit(d)
        self.scope.append(node.name)
        for stmt in node.body:
            self.visit(stmt)
        self.scope.pop()

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        # As co_qualname: what is defined inside a function is "<function>.<locals>.<name>".
        self.scope.append(node.name)
        self.scope.append("<locals>")
        self.in_function += 1
        if node.body and _is_docstring(node.body[0], node):
            self.skip.add(id(node.body[0]))
        self._branches(node.body)
        for stmt in node.body:
            self.visit(stmt)
        self.in_function -= 1
        self.scope.pop()
        self.scope.pop()

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._function(node)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self._function(node)

    def _current(self) -> str:
        # co_qualname of the innermost function (the scope ends with its "<locals>").
        return ".".join(self.scope[:-1])

    def _add(self, kind: str, node: ast.AST, start: int, end: int, replacement: str, description: str) -> None:
        if not self.in_function:
            return
        self.sites.append(Site(kind, self.file, self._current(), node.lineno, start, end, replacement, description))

    # mutations ----------------------------------------------------------------------------------
    def generic_visit(self, node: ast.AST) -> None:
        if id(node) in self.skip:
            return
        super().generic_visit(node)

    def visit_Compare(self, node: ast.Compare) -> None:
        if len(node.ops) == 1:
            op = type(node.ops[0])
            left_end = self.o.at(node.left.end_lineno, node.left.end_col_offset)
            right_start = self.o.at(node.comparators[0].lineno, node.comparators[0].col_offset)
            between = self.o.text(left_end, right_start)
            token = OP_TEXT[op]
            pos = between.find(token) if op not in (ast.In, ast.Is) else _word(between, token)
            if pos >= 0 and "(" not in between and ")" not in between:
                s = left_end + len(between[:pos].encode())
                e = s + len(token.encode())
                if op in FLIPS:
                    new = FLIPS[op][1]
                    self._add("flip_comparison", node, s, e, new, f"`{token}` became `{new}`")
                if op in BOUNDS:
                    new = BOUNDS[op]
                    self._add("off_by_one", node, s, e, new, f"bound `{token}` became `{new}`")
        self.generic_visit(node)

    def visit_Slice(self, node: ast.Slice) -> None:
        for bound in (node.lower, node.upper):
            if bound is not None and hasattr(bound, "lineno"):
                s, e = self.o.span(bound)
                text = self.o.text(s, e)
                self._add("off_by_one", bound, s, e, f"{text} + 1", f"slice bound `{text}` moved by one")
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        args = node.args
        if len(args) >= 2 and not any(isinstance(a, ast.Starred) for a in args[:2]):
            s0, e0 = self.o.span(args[0])
            s1, e1 = self.o.span(args[1])
            a, between, b = self.o.text(s0, e0), self.o.text(e0, s1), self.o.text(s1, e1)
            if a != b:
                self._add("swap_arguments", node, s0, e1, f"{b}{between}{a}", "first two arguments swapped")
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        value = node.value
        if isinstance(value, int) and not isinstance(value, bool):
            s, e = self.o.span(node)
            self._add("change_constant", node, s, e, str(value + 1), f"constant {value} became {value + 1}")

    def visit_Return(self, node: ast.Return) -> None:
        value = node.value
        if value is not None:
            s, e = self.o.span(value)
            text = self.o.text(s, e)
            if isinstance(value, ast.Constant) and isinstance(value.value, bool):
                self._add("invert_boolean_return", node, s, e, str(not value.value), f"returns {not value.value}")
            elif _booleanish(value) and "\n" not in text:
                self._add("invert_boolean_return", node, s, e, f"not ({text})", "boolean result inverted")
        self.generic_visit(node)

    def _branches(self, body: list[ast.stmt]) -> None:
        """`if` statements without `else` that can go: whole lines, and the block keeps a statement."""
        if len(body) < 2:
            return
        for stmt in body:
            if isinstance(stmt, ast.If) and not stmt.orelse and not _is_docstring(stmt, None):
                line_start = self.o.at(stmt.lineno, 0)
                if self.o.text(line_start, self.o.at(stmt.lineno, stmt.col_offset)).strip():
                    continue  # shares its line with something else
                end_line = stmt.end_lineno
                end = self.o.line_starts[end_line] if end_line < len(self.o.line_starts) else len(self.o.data)
                if self.o.text(self.o.at(end_line, stmt.end_col_offset), end).strip():
                    continue
                self._add("drop_branch", stmt, line_start, end, "", f"`if` branch at line {stmt.lineno} removed")

    def visit_If(self, node: ast.If) -> None:
        self._branches(node.body)
        self._branches(node.orelse)
        self.generic_visit(node)

    def _blocks(self, node: ast.AST) -> None:
        for field in ("body", "orelse", "finalbody"):
            block = getattr(node, field, None)
            if isinstance(block, list):
                self._branches(block)
        self.generic_visit(node)

    visit_For = visit_While = visit_With = visit_Try = _blocks


def _word(text: str, word: str) -> int:
    """Position of `word` as a whole word (so `in` is not found inside `not in` or a name)."""
    for i in range(len(text) - len(word) + 1):
        if text[i : i + len(word)] != word:
            continue
        before = text[i - 1] if i else " "
        after = text[i + len(word)] if i + len(word) < len(text) else " "
        if not (before.isalnum() or before == "_") and not (after.isalnum() or after == "_"):
            if word in ("in", "is") and text[max(0, i - 4) : i].strip() == "not":
                continue
            if word == "is" and text[i + 2 :].lstrip().startswith("not"):
                continue
            return i
    return -1


def apply(data: bytes, site: Site) -> bytes:
    return data[: site.start] + site.replacement.encode() + data[site.end :]


def sites(file: str, data: bytes) -> list[Site]:
    """Every valid mutation site of a file, in source order."""
    tree = ast.parse(data, filename=file)
    finder = _Finder(file, data)
    finder.visit(tree)
    original = ast.dump(tree)
    valid = []
    seen = set()
    for site in sorted(finder.sites, key=lambda s: (s.start, s.end, s.kind, s.replacement)):
        key = (site.start, site.end, site.replacement)
        if key in seen:
            continue
        seen.add(key)
        try:
            mutated = ast.parse(apply(data, site))
        except SyntaxError:
            continue
        if ast.dump(mutated) != original:
            valid.append(site)
    return valid


def remove_tests(data: bytes, names: list[str]) -> bytes:
    """The file without the named test functions (`test_x`) or methods (`TestCase.test_x`), decorators
    included. A class left empty keeps a `pass`."""
    tree = ast.parse(data)
    o = _Offsets(data)
    cuts: list[tuple[int, int, str]] = []
    wanted = set(names)
    found = set()

    def visit(body: list[ast.stmt], prefix: str, owner: ast.AST | None) -> None:
        removed_all = True
        for stmt in body:
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)) and f"{prefix}{stmt.name}" in wanted:
                found.add(f"{prefix}{stmt.name}")
                first = min([stmt.lineno, *(d.lineno for d in stmt.decorator_list)])
                start = o.at(first, 0)
                end = o.line_starts[stmt.end_lineno] if stmt.end_lineno < len(o.line_starts) else len(data)
                cuts.append((start, end, ""))
            else:
                removed_all = False
                if isinstance(stmt, ast.ClassDef):
                    visit(stmt.body, f"{prefix}{stmt.name}.", stmt)
        if owner is not None and removed_all and cuts:
            indent = " " * (owner.body[0].col_offset)
            last = cuts[-1]
            cuts[-1] = (last[0], last[1], f"{indent}pass\n")

    visit(tree.body, "", None)
    missing = wanted - found
    if missing:
        raise SystemExit(f"test functions not found: {sorted(missing)}")
    for start, end, text in sorted(cuts, reverse=True):
        data = data[:start] + text.encode() + data[end:]
    ast.parse(data)
    return data


def main(argv: list[str]) -> None:
    if argv[:1] == ["sites"]:
        out = []
        for file in argv[1:]:
            with open(file, "rb") as f:
                out.extend(asdict(s) for s in sites(file, f.read()))
        json.dump(out, sys.stdout)
    elif argv[:1] == ["remove-tests"] and len(argv) >= 3:
        with open(argv[1], "rb") as f:
            sys.stdout.buffer.write(remove_tests(f.read(), argv[2:]))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
