"""Is a learned update rule a gradient descent?  (Sandler et al. 2021, Sec. 3.5, App. A)

Generic analysis of any update map ``Δw(w): R^n -> R^n`` (e.g. one full-batch
BLUR step), independent of the simulator (``DESIGN.md`` §5):

* :func:`jacobian` — ``Q = ∂Δw/∂w`` by finite differences with a checked step,
  or exactly by complex step, with an elementwise error estimate;
* :func:`asymmetry_report` — ``‖Q − Qᵀ‖`` against its noise floor (eq. 10);
* :func:`metric_search` — a constant metric ``ĝ`` with ``ĝQ = (ĝQ)ᵀ`` at many
  states, and whether it is positive definite (eq. 13);
* :func:`circulation_test` — ``∮ Δw·dw`` around small loops, with the Stokes
  prediction ``π ε² vᵀ(Q − Qᵀ)u``;
* :mod:`blursim.analysis.plots` — Fig. 2 heatmap, circulation plot and the default figure of a
  monitored run (:func:`plot_recordings`)
  (matplotlib imported lazily).

and, for BLUR itself:

* :class:`BlurUpdateMap` — one full-batch BLUR step ``Δw(w)`` of a genome on
  a network, on a chosen set of synapses, evaluated as one batched simulation
  along the species axis (complex128 for exact complex-step Jacobians);
* :func:`base_state` — a seeded random or ``"trained:N"`` base point;
* :func:`analyze` — the whole report (Jacobian with FD cross-check, eq. 10,
  eq. 13 when ``n`` is small, circulation, plots and ``report.json``).
"""

from ._common import DEFAULT_MEMORY_BUDGET, AnalysisError, MemoryBudgetError
from .asymmetry import AsymmetryEntry, AsymmetryReport, asymmetry_noise_floor, asymmetry_report
from .blur_map import BlurUpdateMap, SynapseRef, base_state, parse_state
from .circulation import CirculationResult, circulation_test, random_planes, stokes_prediction
from .jacobian import JacobianResult, jacobian, jacobian_complex, jacobian_fd
from .maps import FunctionMap, RestrictedMap, UpdateMap, as_update_map, evaluate_batch, restrict_map
from .metric import MetricSearchResult, eq13_residual, eq13_system, metric_search, sym_from_vector
from .plots import plot_asymmetry_heatmap, plot_circulation, plot_recordings  # matplotlib is imported when a plot is drawn
from .report import AnalysisReport, analyze, estimate_evaluations, fd_complex_agreement, time_per_evaluation


__all__ = [
    "BlurUpdateMap",
    "SynapseRef",
    "base_state",
    "parse_state",
    "AnalysisReport",
    "analyze",
    "estimate_evaluations",
    "fd_complex_agreement",
    "time_per_evaluation",
    "DEFAULT_MEMORY_BUDGET",
    "AnalysisError",
    "MemoryBudgetError",
    "UpdateMap",
    "FunctionMap",
    "RestrictedMap",
    "as_update_map",
    "evaluate_batch",
    "restrict_map",
    "JacobianResult",
    "jacobian",
    "jacobian_fd",
    "jacobian_complex",
    "AsymmetryEntry",
    "AsymmetryReport",
    "asymmetry_report",
    "asymmetry_noise_floor",
    "MetricSearchResult",
    "metric_search",
    "eq13_system",
    "eq13_residual",
    "sym_from_vector",
    "CirculationResult",
    "circulation_test",
    "random_planes",
    "stokes_prediction",
    "plot_asymmetry_heatmap",
    "plot_circulation",
    "plot_recordings",
]
