"""pytest plugin for `entropo tasks build`: which functions of the code under test each test calls.

Loaded with `-p entropo_trace` (this directory on PYTHONPATH). Writes, to $ENTROPO_TRACE_OUT, a JSON
object {test node id: ["path/relative/to/repo.py::co_qualname", ...]} covering setup, call and teardown.
Only function entries are traced (the trace function returns None), so tests run at near full speed.
"""

import json
import os
import sys

import pytest

_ROOT = os.getcwd()
_calls: dict[str, list[str]] = {}
_current: set[str] | None = None


def _tracer(frame, event, arg):
    if event == "call" and _current is not None:
        code = frame.f_code
        path = code.co_filename
        if path.startswith("<"):
            return None  # frozen or generated code
        if not os.path.isabs(path):
            path = os.path.join(_ROOT, path)
        if path.startswith(_ROOT + os.sep):
            _current.add(f"{os.path.relpath(path, _ROOT)}::{code.co_qualname}")
    return None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    global _current
    _current = set()
    sys.settrace(_tracer)
    try:
        yield
    finally:
        sys.settrace(None)
        _calls[item.nodeid] = sorted(_current)
        _current = None


def pytest_sessionfinish(session, exitstatus):
    out = os.environ.get("ENTROPO_TRACE_OUT")
    if out:
        with open(out, "w") as f:
            json.dump(_calls, f)
