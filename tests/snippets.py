"""The code blocks of docs/python.md that the tests run, so that the code the page shows is the code tested."""
import os
import re

from conftest import ROOT

PAGE = os.path.join(ROOT, "docs", "python.md")


def snippet(name):
    """The source of the ```python block that follows the line ``<!-- snippet: NAME -->`` in docs/python.md."""
    with open(PAGE, encoding="utf-8") as f:
        found = re.search(rf"<!-- snippet: {re.escape(name)} -->\n```python\n(.*?)\n```", f.read(), re.S)
    assert found, f"docs/python.md has no python block after <!-- snippet: {name} -->"
    return found.group(1)


def run_snippet(name, folder):
    """Run the block ``name`` of docs/python.md in the working folder ``folder``; its variables afterwards."""
    here, namespace = os.getcwd(), {"__name__": f"docs_snippet_{name}"}
    os.chdir(folder)
    try:
        exec(compile(snippet(name), f"{PAGE}:{name}", "exec"), namespace)
    finally:
        os.chdir(here)
    return namespace
