"""``analyze``: is a genome's update rule a gradient?  (paper Sec. 3.5, App. A; DESIGN §5)

One call runs the whole analysis of one genome on one network, batch and
state and returns an :class:`AnalysisReport` (JSON-ready with
:meth:`AnalysisReport.to_dict`):

1. the update map ``Δw(w)`` of one full-batch step
   (:class:`~blursim.analysis.blur_map.BlurUpdateMap`) on the chosen variables;
2. its Jacobian ``Q`` — by complex step through the complex128 simulator
   (exact to rounding) and, as an independent check, by central finite
   differences with a step ladder and an elementwise error estimate; the
   report states how far the two agree relative to the FD error estimate;
3. the symmetry test of eq. (10) against the noise floor
   (:func:`~blursim.analysis.asymmetry.asymmetry_report`);
4. the constant-metric search of App. A, eq. (13), at the base state plus
   ``metric_states`` other random states — only while ``n`` is small (its
   linear system has ``n(n−1)/2 × n(n+1)/2`` entries), else a "skipped" entry
   that says why and how to restrict the variables;
5. the circulation test ``∮ Δw·dw`` around small loops with the Stokes
   prediction from ``Q``;
6. optionally the plots (Fig. 2 heatmap, circulation curve) and
   ``report.json``, written atomically into ``out_dir``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from blursim.graph import as_program
from blursim.io import atomic_write_json
from blursim.spec import load_genome

from ._common import AnalysisError, MemoryBudgetError, json_float
from .asymmetry import DEFAULT_NOISE_FACTOR, AsymmetryReport, asymmetry_report
from .blur_map import BlurUpdateMap, base_state
from .circulation import DEFAULT_EPS, CirculationResult, circulation_test
from .jacobian import DEFAULT_FD_STEPS, JacobianResult, jacobian_complex, jacobian_fd
from .metric import MetricSearchResult, metric_search
from .plots import plot_asymmetry_heatmap, plot_circulation

FORMAT_REPORT = "blursim.analysis/1"
DEFAULT_METRIC_MAX_N = 48
DEFAULT_METRIC_STATES = 8
FILES = {"report": "report.json", "heatmap": "fig2_asymmetry.png", "circulation": "circulation.png"}


@dataclass
class AnalysisReport:
    """Everything :func:`analyze` computed; :meth:`to_dict` is JSON-serialisable."""

    update_map: BlurUpdateMap
    jacobian: JacobianResult
    asymmetry: AsymmetryReport
    fd_check: dict[str, Any] | None
    fd_jacobian: JacobianResult | None
    metric: MetricSearchResult | None
    metric_skipped: str | None
    circulation: CirculationResult | None
    inputs: dict[str, Any]
    verdict: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)

    @property
    def gradient_like(self) -> bool:
        return bool(self.asymmetry.is_symmetric)

    def to_dict(self) -> dict[str, Any]:
        if self.metric is not None:
            metric = self.metric.to_dict()
        else:
            metric = {"skipped": self.metric_skipped}
        return {
            "format": FORMAT_REPORT,
            "inputs": self.inputs,
            "variables": self.update_map.describe(),
            "jacobian": self.jacobian.to_dict(),
            "jacobian_check": self.fd_check,
            "asymmetry": self.asymmetry.to_dict(),
            "metric": metric,
            "circulation": None if self.circulation is None else self.circulation.to_dict(),
            "verdict": self.verdict,
            "notes": list(self.notes),
            "seconds": {k: json_float(v) for k, v in self.seconds.items()},
            "files": dict(self.files),
        }

    def summary(self) -> str:
        """A few human-readable lines."""
        a = self.asymmetry
        m = self.update_map
        lines = [
            f"variables: {', '.join(b[0] for b in m.blocks)} (n={m.n})",
            f"Jacobian: {self.jacobian.method}, |Q|_F = {a.q_fro:.4g}, estimated error {self.jacobian.error_fro:.3g}",
        ]
        if self.fd_check:
            c = self.fd_check
            lines.append(
                f"check: |Q_fd - Q_complex|_F = {c['diff_fro']:.3g} vs FD error estimate "
                f"{c['fd_error_fro']:.3g} ({'agree' if c['agree'] else 'DISAGREE'})"
            )
        lines.append(
            f"asymmetry: |Q - Q^T|_F / |Q|_F = {a.rel_asymmetry:.3g}, noise floor {a.rel_noise_floor:.3g} "
            f"(relative), margin {a.margin:.3g}"
        )
        lines.append(f"eq. 10: {a.verdict}")
        if self.metric is not None:
            lines.append(f"eq. 13: {self.metric.verdict}")
        else:
            lines.append(f"eq. 13: skipped: {self.metric_skipped}")
        if self.circulation is not None:
            lines.append(f"circulation: {self.circulation.verdict}")
        lines.append(f"verdict: {self.verdict['summary']}")
        for k, v in self.files.items():
            lines.append(f"wrote {k}: {v}")
        return "\n".join(lines)


# ---------------------------------------------------------------------------


def fd_complex_agreement(fd: JacobianResult, cx: JacobianResult) -> dict[str, Any]:
    """How far the FD Jacobian is from the complex-step one, relative to the FD error estimate.

    ``agree`` is ``‖Q_fd − Q_cx‖_F ≤ ‖E_fd‖_F + ‖E_cx‖_F``; ``frac_within``
    is the fraction of entries with ``|ΔQ| ≤ E_fd + E_cx`` elementwise.
    """
    D = np.abs(fd.Q - cx.Q)
    E = fd.error_estimate + cx.error_estimate
    diff_fro = float(np.linalg.norm(D))
    bound = float(np.linalg.norm(E))
    i, j = np.unravel_index(int(np.argmax(D)), D.shape)
    return {
        "diff_fro": diff_fro,
        "diff_max": float(D[i, j]),
        "diff_max_at": [int(i), int(j)],
        "fd_error_fro": float(fd.error_fro),
        "complex_error_fro": float(cx.error_fro),
        "ratio": json_float(diff_fro / bound) if bound > 0 else None,
        "frac_within": float(np.mean(D <= E)),
        "agree": bool(diff_fro <= bound),
        "fd_step": float(fd.step),
    }


def complex_jacobian(bmap: BlurUpdateMap, w: np.ndarray, budget: int | None = None) -> JacobianResult:
    """The complex-step Jacobian of ``bmap`` at ``w``, its error estimate including the rounding floor
    of the diagonal (the update map's own, :meth:`BlurUpdateMap.complex_rounding_floor`)."""
    J = jacobian_complex(bmap, w, memory_budget=budget)
    # Δw = w_after − w cancels the i·h of the perturbation on the diagonal (see BlurUpdateMap).
    J.error_estimate = J.error_estimate + np.diag(np.full(bmap.n, bmap.complex_rounding_floor()))
    return J


def _jacobian(bmap: BlurUpdateMap, w: np.ndarray, method: str, budget, steps) -> JacobianResult:
    try:
        if method == "complex":
            return complex_jacobian(bmap, w, budget)
        return jacobian_fd(bmap, w, steps=steps, memory_budget=budget)
    except MemoryBudgetError as e:
        raise bmap.restate_memory_error(e) from None


def estimate_evaluations(
    n: int, *, method: str = "complex", check_fd: bool = True, metric_states: int = 0,
    n_planes: int = 3, n_points: int = 64, n_eps: int = len(DEFAULT_EPS), n_fd_steps: int = len(DEFAULT_FD_STEPS),
) -> int:
    """Number of simulated species (map evaluations) one :func:`analyze` call needs."""
    per_jac = n if method == "complex" else 2 * n * n_fd_steps
    total = per_jac * (1 + metric_states)
    if check_fd and method == "complex":
        total += 2 * n * n_fd_steps
    total += (n_planes * n_points + 1) * n_eps
    return int(total)


def time_per_evaluation(bmap: BlurUpdateMap, probe: int = 128) -> float:
    """Seconds per map evaluation (one simulated species), timed on a probe batch.

    A warm-up call of two points per dtype comes first (simulator set-up);
    then ``probe`` points are evaluated in complex128 and in float64 and the
    mean time per point is returned.
    """
    w = bmap.w0[None]
    for dt in (np.complex128, np.float64):
        bmap.batch(np.repeat(w, 2, axis=0).astype(dt))
    m = max(2, min(probe, bmap.chunk_size(16)))
    W = np.repeat(w, m, axis=0)
    t0 = time.perf_counter()
    bmap.batch(W.astype(np.complex128))
    bmap.batch(W)
    return (time.perf_counter() - t0) / (2 * m)


def analyze(
    spec: Any,
    genome: Any,
    x: Any,
    y: Any,
    *,
    variables: str | Sequence[str] = "forward",
    state: Any = "random",
    dataset: Any = None,
    state_batch_size: int = 32,
    seed: int = 0,
    method: str = "auto",
    check_fd: bool = True,
    fd_steps: Sequence[float] | None = None,
    noise_factor: float = DEFAULT_NOISE_FACTOR,
    top: int = 10,
    metric: bool | str = "auto",
    metric_max_n: int = DEFAULT_METRIC_MAX_N,
    metric_states: int = DEFAULT_METRIC_STATES,
    circulation: bool = True,
    circulation_eps: Sequence[float] = DEFAULT_EPS,
    n_planes: int = 3,
    n_points: int = 64,
    out_dir: str | os.PathLike | None = None,
    title: str | None = None,
    memory_budget: int | None = None,
    backend: Any = None,
    log: Callable[[str], None] | None = None,
) -> AnalysisReport:
    """Gradient-equivalence analysis of one genome (see the module doc).

    Parameters
    ----------
    spec, genome:
        Network (path, dict, ``NetworkSpec`` or ``Program``) and genome.
    x, y:
        The full batch the update is taken on.
    variables:
        ``"forward"`` (Fig. 2), ``"forward_backward"``, or projection block
        name(s) (``"in->hidden"``, ``"V:in->hidden"``).
    state:
        ``"random"``, ``"trained:N"`` (needs ``dataset``; ``N`` steps on
        batches of ``state_batch_size``) or a ``SynapseState``.
    method:
        ``"auto"``/``"complex"`` (complex step, exact) or ``"fd"``.
    check_fd:
        With the complex step, also compute the FD Jacobian and report the
        agreement (``jacobian_check``).
    metric:
        ``"auto"``: run the eq. 13 search if ``n ≤ metric_max_n``;
        ``True``: run it whatever ``n`` (the memory budget still applies);
        ``False``: skip.
    metric_states:
        Number of other random states (fresh seeded inits of the variables)
        the metric candidates must also satisfy.
    out_dir:
        If given, write ``report.json``, ``fig2_asymmetry.png`` and
        ``circulation.png`` there (atomically).
    memory_budget:
        Bytes; a larger Jacobian raises
        :class:`~blursim.analysis.MemoryBudgetError` that names ``n``, the
        bytes needed and how to restrict the variables.
    """
    say = log or (lambda s: None)
    t_start = time.perf_counter()
    seconds: dict[str, float] = {}
    notes: list[str] = []
    if method not in ("auto", "complex", "fd"):
        raise AnalysisError(f"unknown Jacobian method {method!r}; valid choices: auto, complex, fd.")
    primary = "fd" if method == "fd" else "complex"
    if metric not in ("auto", True, False):
        raise AnalysisError(f"metric must be 'auto', True or False, got {metric!r}.")

    program = as_program(spec)
    genome = load_genome(genome)
    t0 = time.perf_counter()
    st = base_state(program, genome, state, dataset=dataset, batch_size=state_batch_size, seed=seed,
                    backend=backend)
    seconds["state"] = time.perf_counter() - t0
    bmap = BlurUpdateMap(program, genome, x, y, variables=variables, state=st, backend=backend)
    n = bmap.n
    methods = [primary] + (["fd"] if (check_fd and primary == "complex") else [])
    bmap.check_memory(methods, memory_budget)
    w0 = bmap.w0

    piecewise = bmap.piecewise_activations()
    if piecewise:
        notes.append(
            "piecewise activations (" + ", ".join(piecewise) + "): Δw(w) is only piecewise smooth; the "
            "complex step differentiates the active piece and finite differences straddling a kink "
            "disagree with it (see jacobian_check)."
        )
    if bmap.holds_neuron_states:
        notes.append("reset_neurons is off: the base state's neuron states are held fixed in the map.")

    say(f"Jacobian ({primary}) of n={n} variables")
    t0 = time.perf_counter()
    J = _jacobian(bmap, w0, primary, memory_budget, fd_steps)
    seconds["jacobian"] = time.perf_counter() - t0
    fd_J = None
    fd_check = None
    if "fd" in methods and primary == "complex":
        say("finite-difference check")
        t0 = time.perf_counter()
        fd_J = _jacobian(bmap, w0, "fd", memory_budget, fd_steps)
        fd_check = fd_complex_agreement(fd_J, J)
        seconds["fd_check"] = time.perf_counter() - t0
        if not fd_check["agree"]:
            notes.append(
                f"finite differences disagree with the complex step beyond the FD error estimate "
                f"(|ΔQ|_F = {fd_check['diff_fro']:.3g} > {fd_check['fd_error_fro']:.3g})"
                + ("; likely a kink of a piecewise activation near this state" if piecewise else "")
                + ". The asymmetry test uses the complex-step Jacobian."
            )
    asym = asymmetry_report(J, top=top, noise_factor=noise_factor)

    # eq. 13
    met: MetricSearchResult | None = None
    skipped: str | None = None
    if metric is False:
        skipped = "disabled"
    elif metric == "auto" and n > metric_max_n:
        R, C = n * (n - 1) // 2, n * (n + 1) // 2
        sizes = bmap.block_sizes()
        small = bmap.smallest_block()
        skipped = (
            f"n too large: n={n} > metric_max_n={metric_max_n} (the eq. 13 system per Jacobian has "
            f"{R} × {C} entries); restrict the variables, e.g. variables={small!r} "
            f"(CLI: --variables '{small}'; {sizes[small]} variables), which tests metrics that do not "
            "couple the selection to the other synapses"
        )
    else:
        say(f"constant-metric search (eq. 13) with {metric_states} validation states")
        t0 = time.perf_counter()
        try:
            val = []
            for i in range(int(metric_states)):
                other = base_state(program, genome, "random", seed=seed + 1 + i, backend=backend)
                wi = bmap.state_to_vector(other)
                val.append(_jacobian(bmap, wi, primary, memory_budget, fd_steps))
            met = metric_search(J, val, null_rtol=1e-8 if primary == "complex" else "auto",
                                noise_factor=noise_factor, memory_budget=memory_budget)
        except MemoryBudgetError as e:
            skipped = f"{e}"
        seconds["metric"] = time.perf_counter() - t0

    circ = None
    if circulation and n >= 2:
        say("circulation test")
        t0 = time.perf_counter()
        try:
            circ = circulation_test(bmap, w0, eps=circulation_eps, n_planes=n_planes, n_points=n_points,
                                    rng=seed, jacobian=J, noise_factor=noise_factor,
                                    memory_budget=memory_budget)
        except MemoryBudgetError as e:
            raise bmap.restate_memory_error(e) from None
        seconds["circulation"] = time.perf_counter() - t0

    verdict = _verdict(asym, met, circ)
    gen_meta = dict(genome.meta or {})
    inputs = {
        "network": {"name": program.spec.name, "spec_hash": program.spec_hash, "k": program.k,
                    "rules": program.rules.model_dump(mode="json")},
        "genome": {"meta": json.loads(json.dumps(gen_meta, default=str)), "groups": list(genome.groups)},
        "state": st.meta.get("analysis_state", "given") if isinstance(state, str) else "given",
        "seed": int(seed),
        "batch_size": int(bmap.x.shape[0]),
        "method": primary,
        "piecewise_activations": piecewise,
        "evaluations": int(bmap.n_evaluations),
    }
    report = AnalysisReport(
        update_map=bmap, jacobian=J, asymmetry=asym, fd_check=fd_check, fd_jacobian=fd_J, metric=met,
        metric_skipped=skipped, circulation=circ, inputs=inputs, verdict=verdict, notes=notes,
        seconds=seconds,
    )
    if out_dir is not None:
        write_outputs(report, out_dir, title=title)
    report.seconds["total"] = time.perf_counter() - t_start
    report.inputs["evaluations"] = int(bmap.n_evaluations)
    if out_dir is not None:  # rewrite with the final timings
        atomic_write_json(Path(out_dir) / FILES["report"], report.to_dict())
    return report


def _verdict(asym: AsymmetryReport, met: MetricSearchResult | None, circ: CirculationResult | None) -> dict[str, Any]:
    if asym.is_symmetric:
        summary = (
            f"gradient-like: Q is symmetric within the noise floor (‖Q−Qᵀ‖_F = {asym.margin:.3g} × floor), "
            "consistent with Δw = −γ∇L (eq. 9-10)"
        )
    else:
        summary = (
            f"not a gradient of any loss: ‖Q−Qᵀ‖_F/‖Q‖_F = {asym.rel_asymmetry:.3g}, "
            f"{asym.margin:.3g} × the noise floor (eq. 10 violated)"
        )
        if met is not None:
            summary += (
                "; but consistent with gradient descent in a constant metric ĝ (eq. 13)" if met.pd_found
                else "; no constant positive-definite metric makes it one either (eq. 13)"
            )
    if circ is not None and (circ.is_zero != asym.is_symmetric):
        summary += " [note: the circulation test disagrees: " + circ.verdict + "]"
    return {
        "gradient_like": bool(asym.is_symmetric),
        "eq10": asym.verdict,
        "eq13": None if met is None else met.verdict,
        "constant_metric_found": None if met is None else bool(met.pd_found),
        "circulation": None if circ is None else circ.verdict,
        "circulation_zero": None if circ is None else bool(circ.is_zero),
        "summary": summary,
    }


def write_outputs(report: AnalysisReport, out_dir: str | os.PathLike, *, title: str | None = None) -> dict[str, str]:
    """Write ``report.json``, the Fig. 2 heatmap and the circulation plot into ``out_dir`` (atomically)."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise AnalysisError(f"{out} exists and is not a directory; choose another output directory.")
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    m = report.update_map
    inputs = report.inputs
    gmeta = (inputs.get("genome") or {}).get("meta") or {}
    genome = f"preset {gmeta['preset']}" if gmeta.get("preset") else "genome"
    what = (f"{inputs['network']['name'] or 'network'}, {genome}, state {inputs.get('state', '?')} "
            f"(n={m.n} synapses)")
    ttl = title or f"{what}\nrel. asymmetry ‖Q − Qᵀ‖_F/‖Q‖_F = {report.asymmetry.rel_asymmetry:.2g}"
    files["heatmap"] = str(plot_asymmetry_heatmap(report.jacobian, m.blocks, out / FILES["heatmap"], ttl))
    if report.circulation is not None:
        files["circulation"] = str(plot_circulation(
            report.circulation, out / FILES["circulation"],
            title=f"circulation of Δw around loops of radius ε: {what}\n"
                  "(a gradient field circulates only at the rounding floor)"))
    files["report"] = str(out / FILES["report"])
    report.files = files
    atomic_write_json(out / FILES["report"], report.to_dict())
    return files
