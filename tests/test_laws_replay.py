"""Counterexamples: a law violation writes a folder (spec, genome, data, law) that `blursim replay`
runs again, reproducing the failure with the same message and a non-zero exit status."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from conftest import ROOT

from blursim.cli.main import main
from blursim.genome import random_genome
from blursim.sim import Simulator
from blursim.testing import Counterexample, LawViolation, laws, replay
from blursim.testing.report import SAVE_ENV
from blursim.testing.strategies import data_batches, genomes, network_specs, synapse_states

from test_laws import MUTANTS, batches, chain


#: Hypothesis's "explain" phase reruns a failing example many times to say which parts matter;
#: it dominates the time of a failing law test, so tests that expect failures skip it.
NO_EXPLAIN = [p for p in Phase if p.name != "explain"]


def frozen_but_saturating():
    """A rule mutant: frozen plasticity under saturation (outside the law's domain)."""
    return chain({"saturation": True}), laws.frozen_plasticity.conform(random_genome(seed=1))


def test_a_saved_counterexample_replays_from_the_command_line(tmp_path):
    spec, genome = frozen_but_saturating()
    with pytest.raises(LawViolation) as err:
        laws.frozen_plasticity(spec, genome, batches(2), check_domain=False, save=tmp_path / "cx")
    e = err.value
    assert e.saved_to == str(tmp_path / "cx")
    assert f"counterexample saved to {tmp_path / 'cx'}; replay it with: blursim replay {tmp_path / 'cx'}" in str(e)
    assert sorted(p.name for p in (tmp_path / "cx").iterdir()) == ["data.npz", "genome.json", "law.json", "network.json"]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-m", "blursim", "replay", str(tmp_path / "cx")], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1, out.stderr
    assert out.stdout.startswith(e.core + "\n")  # the same message, word for word
    assert "still breaks" in out.stdout
    # the folder's documents are ordinary blursim documents
    assert json.loads((tmp_path / "cx" / "network.json").read_text())["format"] == "blursim.network/1"
    assert main(["validate", str(tmp_path / "cx" / "network.json")]) == 0


def test_the_environment_variable_saves_every_failure_and_hypothesis_leaves_the_shrunk_one(tmp_path, monkeypatch,
                                                                                         capsys):
    monkeypatch.setenv(SAVE_ENV, str(tmp_path))

    @settings(max_examples=20, deadline=None, database=None, phases=NO_EXPLAIN)
    @given(spec=network_specs(n_features=3, hidden=(1, 2), sizes=(1, 3), rules={"saturation": True}),
           genome=genomes(values=True, fixed={"eta_tilde": 0.0, "f_tilde": 1.0}), data=st.data())
    def frozen_under_saturation(spec, genome, data):
        b = [data.draw(data_batches(3, 3, values=True)) for _ in range(2)]
        laws.frozen_plasticity(spec, genome, b, check_domain=False)

    with pytest.raises(LawViolation) as err:
        frozen_under_saturation()
    folder = tmp_path / "frozen_plasticity"
    assert err.value.saved_to == str(folder)
    cx = Counterexample.load(folder)
    assert cx.message == err.value.core  # the folder holds the final (shrunk) failure
    assert len(cx.spec["populations"]) == 3 and cx.genome["groups"]["default"]["nu"] == [[0.0, 0.0], [0.0, 0.0]]
    capsys.readouterr()
    assert main(["replay", str(folder)]) == 1
    assert capsys.readouterr().out.startswith(err.value.core)


@pytest.mark.parametrize("name", ["species_independence", "hidden_relabelling_equivariance",
                                  "batch_order_invariance", "replica_independence", "masked_synapses_stay_zero",
                                  "synapse_update_closed_form", "untied_feedback_drives_backward"])
def test_replay_reproduces_a_simulator_bug_while_it_exists_and_not_once_fixed(name, tmp_path, monkeypatch, capsys):
    """The counterexample of a broken (monkeypatched) simulator records the law's options (other
    species, permutations ...): replayed against the same broken simulator it gives the same message;
    against the real one the law holds and the command exits with 0."""
    spec, genome, kw = MUTANTS[name][0](monkeypatch)
    with pytest.raises(LawViolation) as err:
        laws.LAWS.get(name)(spec, genome, batches(), save=tmp_path, **kw)
    with pytest.raises(LawViolation) as again:
        replay(tmp_path)
    assert again.value.core == err.value.core
    monkeypatch.undo()
    capsys.readouterr()
    assert main(["replay", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"law {name!r} holds on the counterexample" in out and "does not reproduce" in out
    assert err.value.core in out  # and it shows the failure it was saved after


def test_a_counterexample_keeps_a_given_initial_state(tmp_path):
    spec = chain()
    state = None

    @settings(max_examples=1, deadline=None, database=None)
    @given(st_=synapse_states(spec, values=True))
    def draw(st_):
        nonlocal state
        state = st_

    draw()
    W = np.asarray(state.get(0, "W")).copy()
    W[..., 1] = W[..., 0] + 0.5  # channels differ: the law breaks at step 0
    state.set(0, "W", W)
    with pytest.raises(LawViolation) as err:
        laws.tied_channels_stay_tied(spec, random_genome(seed=2), batches(1), state=state, check_domain=False,
                                     save=tmp_path)
    assert (tmp_path / "state.npz").is_file()
    with pytest.raises(LawViolation) as again:
        replay(tmp_path)
    assert again.value.core == err.value.core


def test_replay_of_a_folder_that_is_not_a_counterexample_is_a_one_line_error(tmp_path, capsys):
    assert main(["replay", str(tmp_path / "missing")]) == 2
    assert "is not a counterexample folder" in capsys.readouterr().err
    spec, genome = frozen_but_saturating()
    with pytest.raises(LawViolation):
        laws.frozen_plasticity(spec, genome, batches(1), check_domain=False, save=tmp_path / "cx")
    (tmp_path / "cx" / "data.npz").unlink()
    assert main(["replay", str(tmp_path / "cx")]) == 2
    assert "data.npz is missing" in capsys.readouterr().err
    meta = json.loads((tmp_path / "cx" / "law.json").read_text())
    spec2, genome2 = frozen_but_saturating()
    with pytest.raises(LawViolation):
        laws.frozen_plasticity(spec2, genome2, batches(1), check_domain=False, save=tmp_path / "cx")
    meta["law"] = "no_such_law"
    (tmp_path / "cx" / "law.json").write_text(json.dumps(meta))
    assert main(["replay", str(tmp_path / "cx")]) == 2
    err = capsys.readouterr().err
    assert "unknown law 'no_such_law'" in err and "frozen_plasticity" in err


def test_saving_is_off_when_asked(tmp_path, monkeypatch):
    monkeypatch.setenv(SAVE_ENV, str(tmp_path))
    spec, genome = frozen_but_saturating()
    with pytest.raises(LawViolation) as err:
        laws.frozen_plasticity(spec, genome, batches(1), check_domain=False, save=False)
    assert err.value.saved_to is None and not any(tmp_path.iterdir())
    assert "err.save(DIR)" in str(err.value)
    err.value.save(tmp_path / "later")
    assert Counterexample.load(tmp_path / "later").law == "frozen_plasticity"


def test_simulator_is_unpatched_between_tests():
    assert Simulator.train_step.__qualname__ == "Simulator.train_step"
