"""Every name the docs give imports from where the docs say."""

import importlib
import pathlib
import re

import pytest

DOCS = pathlib.Path(__file__).parent.parent / "docs"


def _import(name):
    parts = name.split(".")
    for split in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for attribute in parts[split:]:
            obj = getattr(obj, attribute)
        return obj
    raise ImportError(name)


def _api_names():
    return sorted({m for page in (DOCS / "api").glob("*.md") for m in re.findall(r"^::: ([\w.]+)", page.read_text(), re.M)})


def _prose_names():
    names = set()
    for page in DOCS.rglob("*.md"):
        names.update(re.findall(r"`(keras_vit(?:\.\w+)+)(?:\(|`)", page.read_text()))
    return sorted(names)


def test_the_docs_name_objects():
    assert len(_api_names()) > 20 and "keras_vit.ops.linear_sum_assignment" in _prose_names()


@pytest.mark.parametrize("name", _api_names())
def test_api_reference_entry_imports(name):
    _import(name)


@pytest.mark.parametrize("name", _prose_names())
def test_name_in_the_guides_imports(name):
    _import(name)
