"""The README and docs/ as a newcomer reads them: every command line they show for main.py, super_resolve.py and
datasets.py is one the tools accept, and every link between them leads to a file that is there."""
import os
import re
import shlex

import pytest

from conftest import ROOT

PAGES = ["README.md"] + [os.path.join("docs", n) for n in sorted(os.listdir(os.path.join(ROOT, "docs")))
                         if n.endswith(".md")]


def command_lines(page):
    """The `python TOOL.py ...` lines of a page's code blocks, continuation lines joined, comments cut."""
    text = open(os.path.join(ROOT, page)).read().replace("\\\n", " ")
    blocks = re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S)
    lines = [line.split(" #")[0].strip() for block in blocks for line in block.splitlines()]
    found = []
    for line in lines:
        for part in line.split("&&"):
            words = shlex.split(part.strip()) if part.strip() else []
            if len(words) > 1 and words[0] == "python" and words[1] in ("main.py", "super_resolve.py", "datasets.py"):
                found.append((words[1], words[2:]))
            elif words[:1] == ["torchrun"] and any(w in ("main.py", "super_resolve.py") for w in words):
                i = next(i for i, w in enumerate(words) if w in ("main.py", "super_resolve.py"))
                found.append((words[i], words[i + 1:]))
    return found


def parser_of(tool):
    import datasets
    import main
    import super_resolve
    return {"main.py": main.build_parser, "super_resolve.py": super_resolve.build_parser,
            "datasets.py": datasets.build_parser}[tool]()


@pytest.mark.parametrize("page", PAGES)
def test_every_command_line_shown_is_one_the_tool_accepts(page, capsys):
    checked = 0
    for tool, argv in command_lines(page):
        if any(w in ("...", "[...]") or w.startswith("[") for w in argv):
            argv = [w for w in argv if w not in ("...", "[...]") and not w.startswith("[") and not w.endswith("]")]
        parser = parser_of(tool)
        try:
            parser.parse_args(argv)
        except SystemExit as e:
            pytest.fail(f"{page}: `python {tool} {' '.join(argv)}` is refused: {capsys.readouterr().err.strip()} "
                        f"(exit {e.code})")
        checked += 1
    if page == "README.md":
        assert checked >= 10, checked  # the README shows the assignment's command lines


@pytest.mark.parametrize("page", PAGES)
def test_every_link_leads_to_a_file_that_is_there(page):
    text = open(os.path.join(ROOT, page)).read()
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if target.startswith(("http://", "https://", "#", "mailto:")):
            continue
        path = os.path.normpath(os.path.join(ROOT, os.path.dirname(page), target.split("#")[0]))
        assert os.path.exists(path), f"{page} links {target}, which is not there"
