"""The procedural mutation finder: every kind is found, applies as a minimal edit, and changes the AST."""

import ast
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import mutate  # noqa: E402

SOURCE = b'''"""Module doc."""
LIMIT = 10


def clamp(x, lo, hi):
    """Keep x in [lo, hi]."""
    if x < lo:
        return lo
    if x > hi:   # upper bound
        return hi
    return x


def is_small(n):
    return n <= LIMIT


class Box:
    def first(self, items):
        def pick(seq):
            return seq[:1]
        return pick(items)

    def ok(self):
        return True


def pair(a, b):
    return divmod(a, b)
'''


def by_kind(sites):
    out = {}
    for s in sites:
        out.setdefault(s.kind, []).append(s)
    return out


def test_finds_every_kind_inside_functions_only():
    sites = mutate.sites("m.py", SOURCE)
    kinds = by_kind(sites)
    assert set(kinds) == set(mutate.KINDS)
    # Module-level constant and the docstrings are never touched.
    assert all(s.function for s in sites)
    assert not any(s.line == 2 for s in sites)
    assert not any(s.line == 6 for s in sites)


def test_each_mutation_is_a_small_edit_that_keeps_formatting():
    for site in mutate.sites("m.py", SOURCE):
        mutated = mutate.apply(SOURCE, site)
        assert ast.dump(ast.parse(mutated)) != ast.dump(ast.parse(SOURCE))
        # The comment on the `if x > hi` line survives any edit elsewhere on it.
        if site.line == 9 and site.kind != "drop_branch":
            assert b"# upper bound" in mutated


def test_specific_sites():
    sites = mutate.sites("m.py", SOURCE)
    described = {(s.kind, s.function, s.description) for s in sites}
    assert ("flip_comparison", "clamp", "`<` became `>`") in described
    assert ("off_by_one", "is_small", "bound `<=` became `<`") in described
    assert ("invert_boolean_return", "is_small", "boolean result inverted") in described
    assert ("invert_boolean_return", "Box.ok", "returns False") in described
    assert ("swap_arguments", "pair", "first two arguments swapped") in described
    assert ("off_by_one", "Box.first.<locals>.pick", "slice bound `1` moved by one") in described
    drop = [s for s in sites if s.kind == "drop_branch"]
    assert {s.line for s in drop} == {7, 9}
    text = mutate.apply(SOURCE, next(s for s in drop if s.line == 7)).decode()
    assert "if x < lo" not in text and "if x > hi" in text
    swapped = mutate.apply(SOURCE, next(s for s in sites if s.kind == "swap_arguments")).decode()
    assert "divmod(b, a)" in swapped


def test_in_and_not_in_are_told_apart():
    src = b"def f(x, y):\n    return x not in y\n"
    flips = [s for s in mutate.sites("f.py", src) if s.kind == "flip_comparison"]
    assert len(flips) == 1
    assert mutate.apply(src, flips[0]) == b"def f(x, y):\n    return x in y\n"


def test_sites_are_deterministic():
    assert mutate.sites("m.py", SOURCE) == mutate.sites("m.py", SOURCE)


def test_remove_tests_takes_functions_and_methods_with_decorators():
    tests = b'''import pytest


@pytest.mark.parametrize("x", [1, 2])
def test_a(x):
    assert x


def test_b():
    assert True


class TestC:
    def test_only(self):
        assert 1
'''
    out = mutate.remove_tests(tests, ["test_a", "TestC.test_only"]).decode()
    assert "test_a" not in out and "parametrize" not in out
    assert "def test_b" in out
    assert "class TestC:\n    pass\n" in out
    ast.parse(out)


def test_remove_tests_names_what_it_cannot_find():
    try:
        mutate.remove_tests(b"def test_x():\n    pass\n", ["test_y"])
    except SystemExit as e:
        assert "test_y" in str(e)
    else:
        raise AssertionError("expected an error")
