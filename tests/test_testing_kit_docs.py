"""docs/testing.md and the README's kit example stay true: the page's Python blocks run, in order, as one
script; its JSON genome loads; the README shows tests/test_testing_kit_example.py verbatim."""

import json
import re

from conftest import ROOT

from blursim.spec import load_genome

DOC = (ROOT / "docs" / "testing.md").read_text()


def test_the_python_examples_of_docs_testing_run(capsys):
    blocks = re.findall(r"```python\n(.*?)\n```", DOC, flags=re.S)
    assert len(blocks) >= 8
    namespace: dict = {"__name__": "docs_testing"}
    for code in blocks:
        exec(compile(code, "<docs/testing.md>", "exec"), namespace)
    out = capsys.readouterr().out
    # the message shown in the page is the one the code prints
    shown = re.search(r"```text\n(law 'frozen_plasticity' \(.*?\) broken.*?)\n```", DOC, flags=re.S).group(1)
    assert shown in out
    assert "has eta_tilde = 0.1, f_tilde = 1 (needs 0 and 1)" in out
    assert "changed from" in out


def test_the_json_genome_of_docs_testing_loads_and_equals_the_python_one():
    doc = json.loads(re.search(r"```json\n(.*?)\n```", DOC, flags=re.S).group(1))
    g = load_genome(doc)
    assert g.groups["default"].mu == [[0.0, 0.0], [0.5, 1.0]] and g.groups["default"].oja_alpha == 0.1


def test_readme_shows_the_kit_example_file_verbatim():
    readme = (ROOT / "README.md").read_text()
    example = (ROOT / "tests" / "test_testing_kit_example.py").read_text().strip()
    assert example in readme
