"""Gradient meta-training: one step of the ``gradient`` strategy (paper Sec. 3.3, 4.2, App. C.1).

:class:`GradientStep` is what the trainer's loop (:class:`blursim.meta.trainer.MetaTrainer`)
runs for a strategy of kind ``"gradient"``; the optimizer and its state are
:class:`blursim.meta.strategies.gradient.GradientDescent`. (This module was
``blursim.meta.gradient`` before 2026-12; it was renamed so that its name tells it from the
optimizer's module.)

One step ``g`` (0-based; the log calls it generation ``g + 1``, like the
evolution strategies' generations, so every run-directory file, check and
tool reads both):

1. for each of the ``N`` runs (``strategy.options.runs``) and each of its
   ``meta_batch`` draws -- all ``N x meta_batch`` of them at once, shared over the process's JAX
   devices where it has several (:meth:`MetaObjective.value_and_grad_many
   <blursim.meta.objective.MetaObjective.value_and_grad_many>`) -- the meta-loss and its exact gradient with respect to
   the searched genome entries (:class:`blursim.meta.objective.MetaObjective`:
   softmax cross-entropy of the query batches after ``T = unroll(g)`` BLUR
   steps from fresh synapses, averaged over training tasks, replicas and query
   batches), with the run's own task seeds
   (:func:`blursim.meta.seeds.gradient_seeds`); draws are averaged;
2. each run's fitness (the experiment's ``fitness.metric`` of its genome, from
   the same forward pass: mean accuracy, or minus the mean cross-entropy);
3. the optimizer step (:class:`blursim.meta.strategies.gradient.GradientDescent`):
   global-norm clipping and Adam; a run whose loss, gradient or unroll is NaN
   or Inf skips the step (counted); every ``sync_every`` steps the runs are
   synchronised to the leader;
4. the record: meta-loss and gradient norm per run; ``best`` is the run with the
   best fitness in this step (its genome *before* the step: the genome the
   fitness was measured on, numbers from the gradient's own forward pass);
   ``mean`` is the *current* genome (the lead run's, after the step). Every
   ``validation.every`` steps the current genome is measured like an evolution
   strategy's mean genome, by the population evaluator (``execution.backend``)
   with the step's fitness seeds (:func:`~blursim.meta.seeds.train_seeds`), and
   both genomes are validated; in the other steps ``mean`` is ``null``
   (**Decision**: a second forward evaluation every step would nearly double
   the cost of a step, and every record already has the runs' training
   accuracy from the meta-gradient's own forward pass);
5. if a run skipped ``max_skips`` consecutive steps, the record is logged, the
   run checkpointed, and training stops with a :class:`MetaGradientError`.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any

import numpy as np

from blursim.errors import BlursimError
from blursim.meta.objective import MetaObjective
from blursim.meta.records import Generation, TrainerState, num
from blursim.meta.seeds import gradient_seeds, train_seeds
from blursim.meta.strategies.gradient import require_jax


class MetaGradientError(BlursimError):
    """Gradient meta-training cannot go on: a run's meta-gradient stays NaN or Inf."""


class GradientStep:
    """The steps of a ``gradient`` experiment (``kind = "gradient"``); see the module docstring.

    ``trainer``: the :class:`~blursim.meta.trainer.MetaTrainer` whose loop runs them;
    ``objective``: the meta-objective (default: ``MetaObjective(setup, "train",
    dtype=execution.dtype)``); anything with its ``value_and_grad(x, seeds, proto)``.
    """

    def __init__(self, trainer: Any, objective: Any = None) -> None:
        self.trainer = trainer
        if objective is None:
            objective = default_objective(trainer.setup)
        self.objective = objective

    def start(self) -> Generation:
        gen = self.trainer.measure_start()
        gen.record.update(skipped=0, meta_loss=None, grad_norm=None, lead=0, synchronised=False)
        return gen

    def step(self, state: TrainerState) -> Generation:
        t0 = time.perf_counter()
        tr = self.trainer
        exp = tr.exp
        g = state.generation
        opt = tr.strategy
        sstate = state.strategy_state
        proto = tr.train_protocol(g)
        metric = exp.fitness.metric
        n, draws, n_tasks = opt.runs, opt.options["meta_batch"], len(tr.train_labels)
        x = np.array(sstate.x)

        t_eval = time.perf_counter()
        losses = np.zeros(n)
        grads = np.zeros_like(x)
        score = np.zeros((n, n_tasks))  # per-task accuracy (MSE for the mse metric)
        loss_of_task = np.zeros((n, n_tasks))  # per-task cross-entropy (MSE)
        ok = np.ones(n, dtype=bool)
        seeds = [[gradient_seeds(exp.seed, r, g, m, n_tasks) for m in range(draws)] for r in range(n)]
        task_key = "mse" if metric == "mse" else "accuracy"
        loss_key = "mse" if metric == "mse" else "cross_entropy"
        pairs = [(r, m) for r in range(n) for m in range(draws)]
        results = value_and_grad_many(self.objective, [x[r] for r, _ in pairs], [seeds[r][m] for r, m in pairs],
                                      proto)
        for (r, _), (loss, grad, met) in zip(pairs, results, strict=True):
            losses[r] += float(loss) / draws
            grads[r] += np.asarray(grad, dtype=np.float64).reshape(-1) / draws
            score[r] += np.asarray(met[task_key], dtype=np.float64) / draws
            loss_of_task[r] += np.asarray(met[loss_key], dtype=np.float64) / draws
            ok[r] &= bool(np.all(met["finite"]))
        with np.errstate(invalid="ignore"):
            ok &= np.isfinite(losses) & np.isfinite(grads).all(axis=1) & np.isfinite(score).all(axis=1)
        if metric == "accuracy":
            fit = score.mean(axis=1)
        else:
            fit = -loss_of_task.mean(axis=1)
        fit = np.where(ok, fit, np.nan)
        eval_s = time.perf_counter() - t_eval

        out = opt.step(sstate, grads, ok, fit)
        new = out.state
        mean_x = np.array(new.x[out.lead])
        mseeds = train_seeds(exp.seed, g, n_tasks)
        best_x = best = current = None
        if ok.any():
            ib = int(np.argmax(np.where(ok, fit, -np.inf)))
            best_x = np.array(x[ib])
        val = tr._validate(([best_x] if best_x is not None else []) + [mean_x], g + 1)
        if best_x is not None:
            best = tr._summary(fit[ib], score[ib], False, None if val is None else val[0])
            best["index"] = ib
        if (g + 1) % exp.validation.every == 0:  # the current genome, measured like ES's mean
            mres = tr.evaluator.evaluate(mean_x[None], "train", mseeds, proto)
            current = tr._summary(mres.fitness(metric)[0], mres.task_score(metric)[0],
                                 bool(mres.diverged[0]), None if val is None else val[-1])
        fin = fit[ok]
        norms = out.grad_norm
        clip = opt.options["clip_norm"]
        record = {
            "generation": g + 1,
            "unroll": proto.steps,
            "evaluations": (g + 1) * n,
            "fitness": {
                "best": num(fin.max()) if fin.size else None,
                "mean": num(fin.mean()) if fin.size else None,
                "median": num(np.median(fin)) if fin.size else None,
                "worst": num(fin.min()) if fin.size else None,
                "best_ever": num(opt.best(new)[1]),
            },
            "diverged": int((~ok).sum()),
            "skipped": new.skipped,
            "step_size": num(opt.step_size(new)),
            "meta_loss": {"mean": num(losses[ok].mean()) if ok.any() else None,
                          "runs": [num(v) for v in losses]},
            "grad_norm": {"mean": num(norms[ok].mean()) if ok.any() else None,
                          "runs": [num(v) for v in norms],
                          "clipped": int(np.sum(ok & (norms > clip)))},
            "lead": out.lead,
            "synchronised": out.synchronised,
            "best": best,
            "mean": current,
            "seeds": {"train": mseeds, "gradient": seeds},
            "engine": getattr(self.objective, "engine", None),
            "time": tr._time(t0, evaluation=eval_s),
        }
        error = None
        if out.stalled:
            r = out.stalled[0]
            error = MetaGradientError(
                f"gradient meta-training stopped after step {g + 1}: the meta-gradient of run {r} was "
                f"NaN or Inf in {int(new.skips[r])} consecutive steps (each skipped, its genome and "
                "Adam state left as they were; the log and checkpoint hold everything up to here). "
                "Lower strategy.options.learning_rate, bound the genome (genome.bounds), shorten the "
                "unroll or compute in float64 (execution.dtype)"
            )
        return Generation(record, best_x, mean_x, TrainerState(g + 1, new, state.records + [record]), error)


def value_and_grad_many(objective: Any, xs: list[np.ndarray], seeds: list[list[int]], proto: Any) -> list:
    """Every genome's ``(loss, gradient, metrics)``: through the objective's own
    ``value_and_grad_many`` where it has one (:class:`~blursim.meta.objective.MetaObjective`
    shares the genomes over its JAX devices), else one ``value_and_grad`` after another."""
    many = getattr(objective, "value_and_grad_many", None)
    if many is not None:
        return many(xs, seeds, proto)
    return [objective.value_and_grad(x, s, proto) for x, s in zip(xs, seeds, strict=True)]


_OBJECTIVES: OrderedDict[tuple[str, str], Any] = OrderedDict()
_MAX_OBJECTIVES = 4


def default_objective(setup: Any) -> Any:
    """The meta-objective of ``setup``'s training tasks (JAX), or a clear error naming the
    install command when JAX or optax is missing.

    Objectives are cached in this process by the experiment's hash, dtype and product route
    (which determine everything they compute), like the population evaluator's engines, so that
    a resumed or repeated run reuses the compiled unroll instead of compiling it again. The
    product route is ``$BLURSIM_JAX_PRODUCTS`` (``xla``, the default, or ``blas``: the unroll's
    products on NumPy's BLAS, CPU only; :mod:`blursim.sim.jax_blas`).
    """
    import os

    key = (setup.spec_hash, setup.experiment.execution.dtype, os.environ.get("BLURSIM_JAX_PRODUCTS") or "xla",
           os.environ.get("BLURSIM_META_ENGINE") or "auto")
    obj = _OBJECTIVES.get(key)
    if obj is None:
        obj = _OBJECTIVES[key] = MetaObjective(setup, "train", dtype=key[1])
        while len(_OBJECTIVES) > _MAX_OBJECTIVES:
            _OBJECTIVES.popitem(last=False)
    _OBJECTIVES.move_to_end(key)
    return obj
