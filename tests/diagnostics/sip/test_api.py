"""Each SIP module's public API is exactly its ``__all__``: every name there exists, every public def is there."""

from __future__ import annotations

import importlib
import inspect

import pytest

MODULES = ["message", "digest", "transport", "options", "register", "alg"]


@pytest.mark.parametrize("name", MODULES)
def test_public_api_is_exactly_all(name: str) -> None:
    module = importlib.import_module(f"diagnostics.sip.{name}")
    exported = set(module.__all__)
    assert all(hasattr(module, item) for item in exported), sorted(i for i in exported if not hasattr(module, i))
    defined = {
        item for item, value in vars(module).items()
        if not item.startswith("_") and (inspect.isfunction(value) or inspect.isclass(value))
        and value.__module__ == module.__name__
    }  # fmt: skip
    assert defined <= exported, f"public but not in __all__: {sorted(defined - exported)}"
