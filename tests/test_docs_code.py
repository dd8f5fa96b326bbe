"""Every Python block in the README and the docs runs, page by page (a
page's blocks share one namespace, in order, in a fresh working folder),
unless the line before it says why it cannot run offline:
`<!-- test: skip, REASON -->` (downloads weights, needs several devices,
...). The pages are backend-independent, so they run once, in the torch
tier of tests/run_all.py (eager: no compilation, the quickest)."""

import glob
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BLOCK = re.compile(r"(?:<!-- test: skip, (?P<reason>[^\n]*?) -->\n)?```python\n(?P<code>.*?)```", re.S)
PAGES = sorted(
    os.path.relpath(path, ROOT)
    for path in [os.path.join(ROOT, "README.md"), *glob.glob(os.path.join(ROOT, "docs", "**", "*.md"), recursive=True)]
    if "```python" in open(path, encoding="utf-8").read()
)


def blocks(page):
    """`[(code, skip reason or None)]` of a page's Python blocks."""
    with open(os.path.join(ROOT, page), encoding="utf-8") as f:
        text = f.read()
    found = [(m.group("code"), m.group("reason")) for m in BLOCK.finditer(text)]
    assert len(found) == text.count("```python"), f"{page}: a Python block the pattern does not read"
    return found


def test_every_skipped_block_says_why():
    for page in PAGES:
        for code, reason in blocks(page):
            assert reason is None or len(reason) > 10, (page, code[:80])


@pytest.mark.parametrize("page", PAGES)
@pytest.mark.one_backend("torch", "the pages' code is backend-independent (the torch tier compiles nothing: quickest)")
def test_page_code_runs(page, tmp_path, monkeypatch):
    runnable = [code for code, reason in blocks(page) if reason is None]
    if not runnable:
        pytest.skip(f"{page}: every block needs a download or several devices (each says why)")
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__docs__"}
    for index, code in enumerate(runnable):
        exec(compile(code, f"{page} (block {index + 1})", "exec"), namespace)


@pytest.mark.one_backend("torch", "the pages do not depend on the backend")
def test_the_home_page_gives_the_readmes_set_up():
    """One set-up story: the README's main-job command is the home page's."""
    readme = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    home = open(os.path.join(ROOT, "docs", "index.md"), encoding="utf-8").read()
    command = next(line for line in readme.splitlines() if line.startswith("python3 -m venv") and "keras-vit train" in line)
    assert command in home
    assert "export KERAS_BACKEND=jax" not in home
