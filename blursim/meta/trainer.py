"""Meta-training: the generation loop over BLUR genomes, and the generation of an evolution strategy.

:class:`MetaTrainer` runs the loop -- start, steps, observers, validation, records -- for every
strategy; what one step does belongs to the strategy's kind (its class attribute ``kind``),
looked up in :data:`STEPS`: :class:`EvolutionStep` for the evolution strategies (below) and
:class:`~blursim.meta.gradient_step.GradientStep` for gradient meta-training (strategy
``gradient``, the same loop, files and checks). Both take the trainer and answer ``start()``
and ``step(state)``; nothing else in the loop tells the kinds apart.

One generation ``g`` of an evolution strategy (0-based; the log calls it ``g + 1``,
"generations done"):

1. ``X = ask()`` -- ``popsize`` genome vectors;
2. fitness of ``X`` on the training tasks as one batched simulation
   (:mod:`blursim.meta.evaluate`): ``T = unroll(g)`` training steps from fresh
   synapses with the generation's task seeds (:mod:`blursim.meta.seeds`),
   then accuracy / cross-entropy on query batches drawn from each task's
   *training* split (the paper's "training accuracy" fitness, Sec. 4.4;
   nothing is tuned on held-out data). Fitness = mean accuracy (or minus mean
   cross-entropy; for target vectors minus the mean squared error, and the
   per-task numbers of the log are then MSE) over tasks, replicas and query
   batches; a genome whose
   simulation produced NaN or Inf gets NaN, which the strategies rank last;
3. ``tell(X, fitness)``;
4. the generation's best candidate and the strategy's new mean genome are
   measured: per-task training accuracy (same protocol and seeds as the
   fitness) and, every ``validation.every`` generations, held-out accuracy on
   the validation tasks (their test split, fixed seeds);
5. one log record goes to every observer (files, progress bar, ...).

Generation 0 of the log is the initial genome (the strategy's starting mean),
measured the same way, so every run's log starts with its baseline.

A run that completes at a generation its schedule did not validate has its
final mean genome validated at the end (:meth:`MetaTrainer.validate_end`):
the number goes to ``mean_genome.json``, :class:`MetaResult` and the final
summary, never into the log, whose records stay those of the schedule (so a
run stopped and extended with more generations logs exactly what an
uninterrupted one logs).

Nothing is written unless an observer writes it (:class:`~blursim.meta.observers.RunDirectory`).
"""

from __future__ import annotations

import datetime as _dt
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from blursim import __version__
from blursim.errors import BlursimError, SpecError
from blursim.meta.distributed import make_executor
from blursim.meta.evaluate import Engine, PopulationEvaluator, Protocol, install_engine, make_job
from blursim.meta.experiment import ExperimentSpec, Setup, prepare_experiment
from blursim.meta.gradient_step import GradientStep
from blursim.meta.observers import RunDirectory
from blursim.meta.records import Generation, TrainerState, num
from blursim.meta.seeds import train_seeds, validation_seeds
from blursim.spec.genome import GenomeSpec
from blursim.spec.loading import relocate

__all__ = ["STEPS", "EvolutionStep", "Generation", "MetaResult", "MetaTrainer", "TrainerState", "make_trainer",
           "meta_train", "num"]


class MetaTrainer:
    """Runs an experiment's generations; see the module docstring.

    Parameters
    ----------
    setup:
        A prepared experiment (:func:`~blursim.meta.experiment.prepare_experiment`).
    executor:
        Where population chunks run: ``None`` (this process) or a
        :class:`~blursim.meta.distributed.DaskExecutor`.
    memory_budget_mb:
        Overrides ``execution.memory_budget_mb`` (chunking never changes results).
    objective:
        For the ``gradient`` strategy, the meta-objective to differentiate (see
        :class:`~blursim.meta.gradient_step.GradientStep`); refused by the evolution strategies.
    """

    #: the final genome's validation of the last :meth:`run`, when its last record had none
    end_validation: dict | None = None

    def __init__(self, setup: Setup, *, executor: Any = None, memory_budget_mb: float | None = None,
                 objective: Any = None) -> None:
        self.setup = setup
        self.exp: ExperimentSpec = setup.experiment
        self.strategy = setup.strategy
        budget = memory_budget_mb if memory_budget_mb is not None else self.exp.execution.memory_budget_mb
        # before anything is built: one genome must fit the budget, and (evaluated here) one chunk
        # this machine
        try:
            self.memory = setup.plan_memory(
                budget, local=executor is None,
                path="--memory-budget" if memory_budget_mb is not None else "$.execution.memory_budget_mb")
        except SpecError as e:
            raise relocate(e, self.exp) from None
        self.job = make_job(setup)
        datasets = {"train": [t.dataset for t in setup.train_tasks],
                    "validation": [t.dataset for t in setup.val_tasks]}
        install_engine(Engine(self.job, programs=setup.programs, datasets=datasets))
        self.evaluator = PopulationEvaluator(
            self.job, setup.programs, datasets, memory_budget=budget * 2**20, executor=executor,
        )
        self.train_labels = [t.label for t in setup.train_tasks]
        self.val_labels = [t.label for t in setup.val_tasks]
        self.val_seeds = validation_seeds(self.exp.seed, len(setup.val_tasks))
        if objective is None and executor is not None and self.strategy.kind == "gradient":
            from blursim.meta.distributed import DaskObjective

            # the runs' meta-gradients go to the cluster too (issue 25 item 4)
            objective = DaskObjective(executor, setup, self.exp.execution.dtype)
        #: What makes the steps of this strategy's kind (:data:`STEPS`).
        self.steps = STEPS[self.strategy.kind](self, objective)

    # ---------------------------------------------------------------- protocols
    def train_protocol(self, generation: int) -> Protocol:
        return self.setup.train_protocol(generation)

    def validation_protocol(self, generation: int) -> Protocol:
        return self.setup.validation_protocol(generation)

    def validation_due(self, done: int) -> bool:
        """Whether the record after ``done`` completed generations is validated."""
        return bool(self.val_labels) and done % self.exp.validation.every == 0

    # ------------------------------------------------------------------ genomes
    def genome(self, x: np.ndarray, **meta: Any) -> GenomeSpec:
        """The genome document of vector ``x`` (non-evolved entries from the initial genome)."""
        g = self.setup.layout.from_vector(np.asarray(x, dtype=np.float64), self.setup.base_genome)
        info = {"experiment": self.setup.name, "spec_hash": self.setup.spec_hash, "seed": self.exp.seed,
                "blursim_version": __version__, **meta}
        return GenomeSpec(k=g.k, groups=g.groups, meta=info)

    # ---------------------------------------------------------------- the loop
    def start(self) -> Generation:
        """The initial state, with record 0 (the starting genome measured)."""
        return self.steps.start()

    def step(self, state: TrainerState) -> Generation:
        """Run one generation (gradient step) from ``state``; returns the new state and its record."""
        return self.steps.step(state)

    def measure_start(self) -> Generation:
        """The strategy's initial state and record 0: its starting genome measured on the training
        tasks (and validated), as every later record measures its mean genome."""
        t0 = time.perf_counter()
        sstate = self.strategy.init()
        mean_x = self.strategy.mean(sstate)
        seeds = train_seeds(self.exp.seed, 0, len(self.train_labels))
        proto = self.train_protocol(0)
        res = self.evaluator.evaluate(mean_x[None], "train", seeds, proto)
        val = self._validate([mean_x], 0)
        metric = self.exp.fitness.metric
        record = {
            "generation": 0,
            "unroll": proto.steps,
            "evaluations": 0,
            "fitness": None,
            "diverged": 0,
            "step_size": num(self.strategy.step_size(sstate)),
            "best": None,
            "mean": self._summary(res.fitness(metric)[0], res.task_score(metric)[0],
                                 bool(res.diverged[0]), None if val is None else val[0]),
            "seeds": {"train": seeds},
            "time": self._time(t0, evaluation=0.0),
        }
        state = TrainerState(0, sstate, [record])
        return Generation(record, None, mean_x, state)

    def run(self, state: TrainerState | None, generations: int,
            observers: Sequence[Any] = ()) -> TrainerState:
        """Run until ``generations`` generations are done (from ``state``, or a fresh start).

        A completed run whose last record was not validated is validated at the end
        (:attr:`end_validation`, read by the observers' ``on_end``).

        Observers get ``on_start(trainer, state)`` (``state`` None for a fresh
        run), ``on_generation(trainer, generation)`` for record 0 of a fresh run
        and after every generation, and ``on_end(trainer, state, completed)``
        -- also when the run is interrupted (``completed`` False). A generation that
        carries an ``error`` is handed to the observers, then the error is raised.
        """
        self.end_validation = None
        for o in observers:
            _call(o, "on_start", self, state)
        completed = False
        try:
            if state is None:
                gen = self.start()
                state = gen.state
                for o in observers:
                    _call(o, "on_generation", self, gen)
            while state.generation < generations:
                gen = self.step(state)
                state = gen.state
                for o in observers:
                    _call(o, "on_generation", self, gen)
                if gen.error is not None:  # logged and checkpointed, then the run stops
                    raise gen.error
            self.end_validation = self.validate_end(state)  # observers' on_end read it
            completed = True
        finally:
            if state is not None:
                for o in observers:
                    _call(o, "on_end", self, state, completed)
        return state

    # ------------------------------------------------------------------ helpers
    def validate_end(self, state: TrainerState) -> dict | None:
        """The run's final numbers when its last record was not validated: the mean (gradient:
        current) genome of ``state`` on the validation tasks, as the schedule would have
        validated it after ``state.generation`` generations -- ``{"generation", "validation",
        "validation_mean", "x"}``; ``None`` when there are no validation tasks or the last
        record has its validation."""
        if not self.val_labels or (state.records[-1].get("mean") or {}).get("validation_mean") is not None:
            return None
        x = self.strategy.mean(state.strategy_state)
        acc, _ = self._validate([x], state.generation, force=True)[0]
        return {"generation": state.generation, "validation": dict(zip(self.val_labels, map(num, acc))),
                "validation_mean": num(np.mean(acc)), "x": x}

    def _validate(self, genomes: list[np.ndarray], done: int, force: bool = False) -> list[tuple] | None:
        if not force and not self.validation_due(done):
            return None
        res = self.evaluator.evaluate(np.stack(genomes), "validation", self.val_seeds,
                                      self.validation_protocol(max(done - 1, 0)))
        acc = res.task_score(self.exp.fitness.metric)
        return [(acc[i], bool(res.diverged[i])) for i in range(len(genomes))]

    def _summary(self, fitness: float, train_acc: np.ndarray, diverged: bool,
                 val: tuple | None) -> dict:
        out = {
            "fitness": num(fitness),
            "diverged": diverged,
            "train": {lab: num(a) for lab, a in zip(self.train_labels, train_acc, strict=True)},
            "train_mean": num(np.mean(train_acc)),
            "validation": None,
            "validation_mean": None,
        }
        if val is not None:
            acc, vdiv = val
            out["validation"] = {lab: num(a) for lab, a in zip(self.val_labels, acc, strict=True)}
            out["validation_mean"] = num(np.mean(acc))
            out["validation_diverged"] = vdiv
        return out

    @staticmethod
    def _time(t0: float, evaluation: float) -> dict:
        return {
            "seconds": time.perf_counter() - t0,
            "evaluation_seconds": evaluation,
            "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }


def _call(obs: Any, name: str, *args: Any) -> None:
    fn = getattr(obs, name, None)
    if fn is not None:
        fn(*args)


# ------------------------------------------------------- the step of an evolution strategy
class EvolutionStep:
    """One generation of an evolution strategy (``kind = "evolution"``; the module docstring):
    ask, evaluate the population, tell, measure the best candidate and the new mean."""

    def __init__(self, trainer: MetaTrainer, objective: Any = None) -> None:
        if objective is not None:
            raise BlursimError(f"an objective is for the gradient strategy, not {trainer.strategy.name!r}")
        self.trainer = trainer

    def start(self) -> Generation:
        return self.trainer.measure_start()

    def step(self, state: TrainerState) -> Generation:
        t0 = time.perf_counter()
        tr = self.trainer
        strategy, evaluator = tr.strategy, tr.evaluator
        g = state.generation
        metric = tr.exp.fitness.metric
        seeds = train_seeds(tr.exp.seed, g, len(tr.train_labels))
        proto = tr.train_protocol(g)
        X, sstate = strategy.ask(state.strategy_state)
        t_eval = time.perf_counter()
        res = evaluator.evaluate(X, "train", seeds, proto)
        eval_s = time.perf_counter() - t_eval
        fit = res.fitness(metric)
        sstate = strategy.tell(sstate, X, fit)
        mean_x = strategy.mean(sstate)

        ok = np.isfinite(fit)
        best_x, best = None, None
        if ok.any():
            ib = int(np.argmax(np.where(ok, fit, -np.inf)))
            best_x = np.array(X[ib])
        mres = evaluator.evaluate(mean_x[None], "train", seeds, proto)
        genomes = ([best_x] if best_x is not None else []) + [mean_x]
        val = tr._validate(genomes, g + 1)
        if best_x is not None:
            best = tr._summary(fit[ib], res.task_score(metric)[ib], False, None if val is None else val[0])
            best["index"] = ib
        mval = None if val is None else val[-1]
        fin = fit[ok]
        record = {
            "generation": g + 1,
            "unroll": proto.steps,
            "evaluations": (g + 1) * strategy.popsize,
            "fitness": {
                "best": num(fin.max()) if fin.size else None,
                "mean": num(fin.mean()) if fin.size else None,
                "median": num(np.median(fin)) if fin.size else None,
                "worst": num(fin.min()) if fin.size else None,
                "best_ever": num(strategy.best(sstate)[1]),
            },
            "diverged": int((~ok).sum()),
            "step_size": num(strategy.step_size(sstate)),
            "best": best,
            "mean": tr._summary(mres.fitness(metric)[0], mres.task_score(metric)[0], bool(mres.diverged[0]), mval),
            "seeds": {"train": seeds},
            "time": tr._time(t0, evaluation=eval_s),
        }
        new = TrainerState(g + 1, sstate, state.records + [record])
        return Generation(record, best_x, mean_x, new)


#: Strategy kind (a strategy class's ``kind``) -> what makes its steps: ``cls(trainer, objective)``
#: with ``start()`` and ``step(state)``.
STEPS: dict[str, type] = {"evolution": EvolutionStep, "gradient": GradientStep}


# ------------------------------------------------------------------- one call
@dataclass
class MetaResult:
    """The outcome of :func:`meta_train`."""

    setup: Setup
    state: TrainerState
    records: list[dict]
    best_genome: GenomeSpec | None
    mean_genome: GenomeSpec
    out: Path | None
    seconds: float
    completed: bool = True
    #: the final mean genome's validation when the last record has none (:meth:`MetaTrainer.validate_end`)
    end_validation: dict | None = None


def meta_train(
    experiment: str | Path | dict | ExperimentSpec | Setup,
    *,
    out: str | Path | None = None,
    generations: int | None = None,
    resume: bool = False,
    executor: Any = None,
    observers: Sequence[Any] = (),
    memory_budget_mb: float | None = None,
    plot: bool = True,
    objective: Any = None,
) -> MetaResult:
    """Meta-train the genome of ``experiment`` for ``generations`` (default: the
    experiment's) generations in total.

    ``out``: directory for the run's files (log, genomes, checkpoint, plot;
    see :class:`~blursim.meta.observers.RunDirectory`), which must be new or
    empty and is locked while the run lasts; ``None`` writes nothing.
    ``resume``: continue the run in ``out`` from its checkpoint, or restart it
    when it stopped before its first checkpoint (refused when ``out`` was made
    by a different experiment). ``executor``: ``None`` uses the
    experiment's ``execution.dask`` setting (a local evaluation when absent).
    ``objective``: for the ``gradient`` strategy, the meta-objective to differentiate (default:
    :class:`blursim.meta.objective.MetaObjective` of the training tasks; any object with its
    ``value_and_grad``).
    """
    t0 = time.perf_counter()
    setup = experiment if isinstance(experiment, Setup) else prepare_experiment(experiment)
    total = generations if generations is not None else setup.experiment.generations
    if total < 0:
        raise BlursimError(f"generations must be >= 0 (got {total})")
    if resume and out is None:
        raise BlursimError("resume needs the run's output directory")
    rundir = RunDirectory(out, plot=plot) if out is not None else None
    state = None
    own = executor is None
    try:
        if rundir is not None:  # locks the directory; every check before any compute
            state = rundir.resume(setup) if resume else rundir.create(setup)
        if own:
            executor = make_executor(setup.experiment.execution.dask)
        trainer = make_trainer(setup, executor=executor, memory_budget_mb=memory_budget_mb,
                               objective=objective)
        obs = ([rundir] if rundir is not None else []) + list(observers)
        keep = _Keep()
        state = trainer.run(state, total, obs + [keep])
    finally:
        if own and executor is not None:
            executor.close()
        if rundir is not None:
            rundir.close()
    last = state.records[-1]
    best = None
    if keep.best_x is not None:
        best = trainer.genome(keep.best_x, kind="best", generation=keep.generation)
    elif not keep.seen and rundir is not None and (rundir.path / "best_genome.json").exists():
        from blursim.spec import load_genome

        best = load_genome(rundir.path / "best_genome.json")
    mean_x = keep.mean_x if keep.mean_x is not None else trainer.strategy.mean(state.strategy_state)
    end = getattr(trainer, "end_validation", None)
    mean = trainer.genome(mean_x, kind="mean", generation=last["generation"],
                          **({} if end is None else {"validation_mean": end["validation_mean"]}))
    return MetaResult(setup, state, state.records, best, mean,
                      None if rundir is None else rundir.path, time.perf_counter() - t0, end_validation=end)


def make_trainer(setup: Setup, *, executor: Any = None, memory_budget_mb: float | None = None,
                 objective: Any = None) -> MetaTrainer:
    """The trainer of ``setup`` (a :class:`MetaTrainer`, whatever its strategy's kind)."""
    return MetaTrainer(setup, executor=executor, memory_budget_mb=memory_budget_mb, objective=objective)


class _Keep:
    """Observer that remembers the latest generation's best (``None`` when all of its candidates
    diverged, as ``best_genome.json``) and mean vectors."""

    best_x = None
    mean_x = None
    generation = 0
    seen = False

    def on_generation(self, trainer: MetaTrainer, gen: Generation) -> None:
        if gen.record["generation"] > 0:
            self.best_x, self.generation, self.seen = gen.best_x, gen.record["generation"], True
        self.mean_x = gen.mean_x
