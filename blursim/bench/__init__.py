"""The benchmark behind ``blursim bench`` (also ``python tools/bench.py``): how fast one BLUR step
is, honestly.

Modules: :mod:`~blursim.bench.workloads` (the networks, genomes and batches timed, and the
products-only ceiling), :mod:`~blursim.bench.timing` (the roofline, repeated timing, peak
memory, the machine and its load), :mod:`~blursim.bench.jax_rows` (the JAX engine's rows),
:mod:`~blursim.bench.runner` (:func:`run_benchmark`: every row, interleaved rounds),
:mod:`~blursim.bench.targets` (the issue-25 targets) and
:mod:`~blursim.bench.report` (:func:`format_table`). The command line is
:mod:`blursim.cli.bench`.

One run measures, on the chosen backend:

- ``roofline``: the machine's float32 matrix-product rate (square GEMM, best
  of several sizes and repeats), measured in this run;
- ``paper-es``: populations (196, 512, 10), k = 2, batch 128, the paper's
  default rules (additive backward update, untied multi-channel synapses,
  relu∘tanh hidden, tanh output), float32, R = 1, for S species: the full
  training step and the forward-only step, as genome-steps/s, GFLOP/s
  counted with the *minimal* FLOPs (:meth:`Simulator.flops`) and % of the
  roofline;
- ``paper-es train no BLAS binding``: the same training step on a NumPy
  backend without the direct BLAS binding (``numpy.matmul`` products, BLAS
  threads limited through threadpoolctl: what NumPy on MKL or Accelerate
  gets), measured back to back with the ``train`` row in every round; the
  binding's speed-up is the median of those pairs' ratios (NumPy backend with
  the binding only);
- ``paper-es products only``: the same training step's matrix products
  alone, scheduled as the simulator schedules them (same operators, species
  chunks, threads and update jobs) on fixed states: the ceiling this BLAS
  sets at these shapes, so that the table separates what the products cost
  from what everything else in the step costs;
- ``fitness``: the Sec. 4.4 evaluation of a population of 80 (15 training
  steps, then 20 query batches of 128), in genome-evaluations/s;
- ``local-sparse``: 28x28 -> 28x28 (local2d, radius 2) -> 10, run with
  block tiles and, in the same run, as masked dense; the speed ratio and the
  block density;
- with the ``jax`` extra (:mod:`blursim.bench.jax_rows`; ``--no-jax`` leaves them
  out, ``--backend jax`` runs only them): ``paper-es train jax``, the JAX
  engine's training step back to back with the Simulator's at every S, and
  ``meta-gradient forward / value_and_grad``, the Sec. 3.3 meta-loss through
  T-step unrolls (``--unrolls``) and its exact gradient, back to back, and
  ``paper-es train unroll``, the fast engine's T training steps at S = 1 right
  after each gradient;
- the issue-25 targets (:mod:`~blursim.bench.targets`): the Sec. 4.4 run's
  estimated minutes, the S = 80 step's % of roofline, the JAX step's and the
  meta-gradient's ratios, each beside its target;
- peak memory of every row (NumPy: ``tracemalloc`` peak of one step from
  fresh synapses; CuPy: memory-pool bytes; JAX: XLA's buffer assignment).

Times are the median of repeated steps (the best is reported too); every
row is measured ``--rounds`` times interleaved with the others and the best
round is kept, so that a busy shared machine disturbs the result less.
The load of the machine is measured too (its load average against its CPUs
before the run, and the spread of the rooflines measured around the rows); a
loaded machine is said so in the table, with what it does to the percentages
and to the verdicts against targets (:func:`blursim.bench.timing.machine_load`).
Prints a table and writes it as JSON (``--json``).
"""


from blursim.bench.report import format_table
from blursim.bench.runner import run_benchmark
from blursim.bench.timing import Roofline, machine_load, roofline, time_fn
from blursim.bench.workloads import PAPER_ES, Workload, local_sparse_spec, products_only

__all__ = ["PAPER_ES", "Roofline", "Workload", "format_table", "local_sparse_spec", "machine_load",
           "products_only", "roofline", "run_benchmark", "time_fn"]
