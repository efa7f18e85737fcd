"""The README's set-up stays true: CI runs its test command, its examples run."""

import re
import subprocess
import sys

from conftest import ROOT

README = (ROOT / "README.md").read_text()


def _setup_commands():
    section = README.split("## Set-up", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.*?)\n```", section, flags=re.S)


def test_setup_is_two_commands_and_ci_runs_the_test_command():
    cmds = _setup_commands()
    assert len(cmds) == 2, cmds
    install, test = cmds
    assert "pip install" in install and "python3.11 -m venv" in install
    test_cmd = test.split("&&")[-1].strip()
    ci = (ROOT / ".ci" / "run").read_text()
    ci_lines = [line.strip() for line in ci.splitlines() if line.strip() and not line.startswith("#")]
    assert test_cmd in ci_lines, f"{test_cmd!r} is not a command of .ci/run"


def test_readme_python_example_runs():
    code = re.search(r"## Python API\n\n```python\n(.*?)\n```", README, flags=re.S).group(1)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    accs = [float(v) for v in re.findall(r"[0-9.]+", out.stdout.split("[", 1)[1])]
    assert len(accs) == 2
    assert accs[0] >= 0.9  # the backprop genome learns xor


def test_ci_installs_the_extras_the_readme_installs():
    install = _setup_commands()[0]
    readme_extras = re.search(r'pip install -e "\.\[([^\]]*)\]"', install).group(1)
    ci = (ROOT / ".ci" / "run").read_text()
    ci_extras = re.search(r'pip install -q -e "\.\[([^\]]*)\]"', ci).group(1)
    assert set(readme_extras.split(",")) == set(ci_extras.split(","))
    assert "jax" in readme_extras.split(",")  # the gradient path's tests run in CI
