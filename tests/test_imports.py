"""The package imports in any module order: no import cycle hides behind a lucky order."""

from __future__ import annotations

import importlib
import multiprocessing
import pkgutil
import random
import sys

import optimas_cli

MODULES = sorted(m.name for m in pkgutil.walk_packages(optimas_cli.__path__, "optimas_cli."))


def _import_all(order: list[str]) -> str | None:
    """In a forked process: forget every optimas_cli module (third-party ones stay loaded,
    their order does not matter here), then import ours in `order`."""
    for name in [n for n in list(sys.modules) if n.startswith("optimas_cli")]:
        del sys.modules[name]
    try:
        for name in order:
            importlib.import_module(name)
    except Exception as e:  # noqa: BLE001 - reported to the test
        return f"{order[0]} first, then {name}: {type(e).__name__}: {e}"
    return None


def test_every_module_imports_first_and_the_rest_after_it():
    assert len(MODULES) > 40
    for name in MODULES:  # load the third-party libraries once, in the parent
        importlib.import_module(name)
    rng = random.Random(0)
    orders = []
    for first in MODULES:  # each module as the first import, the rest shuffled
        rest = [m for m in MODULES if m != first]
        rng.shuffle(rest)
        orders.append([first, *rest])
    with multiprocessing.get_context("fork").Pool(2) as pool:
        problems = [p for p in pool.map(_import_all, orders) if p]
    assert not problems, "\n".join(problems)
