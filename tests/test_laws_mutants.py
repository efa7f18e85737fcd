"""The mutation check (blursim.testing.mutants): planted bugs of the step, and the laws that catch them.

The default suite checks a fast subset — each kept mutant on its fixed example, ``check_all`` as
docs/testing.md shows — and that planting is undone; ``-m slow`` runs every kept mutant that way
and the drawn mutation check of ``tools/mutation_check.py`` (at least 11 of the 12 caught).
"""

from __future__ import annotations

import sys

import pytest

from conftest import ROOT

from blursim.sim import Simulator
from blursim.sim import run as sim_run
from blursim.testing import LAWS, LawViolation, laws
from blursim.testing.mutants import KEPT, MUTANTS, check_mutant, example_batches, mutation_table, planted

#: The fast subset of the kept mutants the default suite plants (the slow test plants all twelve).
FAST = ("backward_reads_forward_transpose", "oja_factor_sign", "normalisation_wrong_axis")


def test_the_kept_set_is_twelve_bugs_each_with_an_equation_and_a_law():
    assert len(KEPT) == 12
    for name in MUTANTS:
        m = MUTANTS.get(name)
        assert m.equation and m.bug and m.caught_by in LAWS, name


def test_planting_is_undone():
    from blursim.sim.fast import StepRun

    before = {n: getattr(Simulator, n) for n in ("__init__", "train_step", "_input_states")}
    mix, unroll = StepRun.mix, sim_run.train_unroll
    for name in MUTANTS:
        with planted(name):
            pass
    assert {n: getattr(Simulator, n) for n in before} == before
    assert sim_run.train_unroll is unroll and StepRun.mix is mix
    with pytest.raises(RuntimeError), planted("oja_factor_sign"):
        raise RuntimeError("a failure inside the block")
    assert Simulator.__init__ is before["__init__"]


def test_a_kernel_mutant_replaces_one_primitive_of_every_new_simulator():
    """The mutants of the step's primitives go through the step's extension point
    (blursim.sim.kernels: ``sim.kernels.replace(name=fn)``)."""
    from blursim.graph import as_program
    from blursim.sim.fast import FastKernels

    prog = as_program(MUTANTS.get("oja_factor_sign").example()[0])
    assert MUTANTS.get("oja_factor_sign").plant.primitives == ("oja_keep",)
    with planted("oja_factor_sign"):
        sim = Simulator(prog)
        assert sim.kernels.name.endswith("+oja_keep")
        assert not hasattr(sim.kernels.oja_keep, "__self__")  # the replacement: a plain fn(run, job, n2)
    assert type(Simulator(prog).kernels) is FastKernels and Simulator(prog).kernels.name == FastKernels.name


def _check_all_catches(name):
    m = MUTANTS.get(name)
    spec, genome = m.example()
    laws.check_all(spec, genome, example_batches(), conform=True, save=False)  # the real step: every law holds
    with planted(name), pytest.raises(LawViolation) as err:
        laws.check_all(spec, genome, example_batches(), conform=True, save=False)
    e = err.value
    assert e.equation and str(e).startswith(f"law {e.law!r} ({e.equation}) broken: ")
    assert "step" in str(e.where) and e.where.species is not None  # (Q's step is in its label)
    return e


@pytest.mark.parametrize("name", FAST)
def test_check_all_catches_a_planted_bug_on_its_example(name):
    e = _check_all_catches(name)
    assert e.where.replica is not None


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in MUTANTS if n not in FAST])
def test_check_all_catches_every_planted_bug_on_its_example(name):
    _check_all_catches(name)


def test_check_mutant_tabulates_catches():
    m = MUTANTS.get("target_sign_flipped")
    spec, genome = m.example()
    res = check_mutant(m, [(spec, genome, example_batches(1))])
    assert res.runs == 1 and res.caught == 1 and res.by_law == {"feedback_sets_output_states": 1}
    table = mutation_table([res])
    assert "| `target_sign_flipped` | Sec. 3.3 | yes | 1 of 1 | `feedback_sets_output_states` (1) |" in table
    assert table.endswith("caught: 1 of 1")


@pytest.mark.slow
def test_the_mutation_check_catches_at_least_11_of_the_12_kept_bugs(capsys):
    """tools/mutation_check.py as docs/testing.md runs it, on fewer draws (the documented table uses
    more)."""
    sys.path.insert(0, str(ROOT / "tools"))
    import mutation_check

    rc = mutation_check.main(["--examples", "4", "--per-law", "1"])
    out = capsys.readouterr().out
    assert rc == 0, out
