"""Every row of ``blursim bench``, measured in interleaved rounds (:func:`run_benchmark`); what
each row is: :mod:`blursim.bench`."""

from __future__ import annotations

import statistics
import sys
import time

from blursim.bench import jax_rows
from blursim.bench.targets import targets
from blursim.bench.timing import Roofline, load_average, machine_info, machine_load, time_fn
from blursim.bench.workloads import PAPER_ES, Workload, fitness_workload, local_sparse_spec, products_only

def _row(name, S, sample, flops_per_genome, roof, peak, extra=None) -> dict:
    ts, adj = sample
    med, best = statistics.median(ts), min(ts)
    r = {"row": name, "S": S, "median_s": med, "best_s": best, "reps": len(ts),
         "genome_steps_per_s": S / med, "peak_bytes": peak, "adjacent_roofline": adj}
    if flops_per_genome is not None:
        r["gflops"] = S * flops_per_genome / med / 1e9
        r["gflops_best"] = S * flops_per_genome / best / 1e9
        r["pct_roofline"] = 100.0 * r["gflops"] / adj if adj else None
        r["pct_best_roofline"] = 100.0 * r["gflops"] / roof if roof else None
    if extra:
        r.update(extra)
    return r


def run_benchmark(backend_name: str | None = None, species=(1, 8, 80), rounds: int = 2,
                  min_time: float = 1.0, quick: bool = False, log=print, fitness_species: int = 80,
                  jax: bool | None = None, unrolls=(10, 50), jax_products=("xla", "blas")) -> dict:
    """Measure every row; returns ``{"machine": ..., "roofline_gflops": ..., "rows": [...]}``.

    Each timed row is bracketed by two short roofline measurements; its
    ``pct_roofline`` is relative to their mean (the machine as it was during
    that row: on a shared machine other work slows both alike), and
    ``pct_best_roofline`` to the best roofline of the whole run.

    ``jax``: also measure the JAX engine's rows (:mod:`blursim.bench.jax_rows`; default: when
    the JAX extra is installed), with meta-gradient unrolls of ``unrolls`` steps (``--quick``:
    2). ``backend_name="jax"``: the JAX rows only (the roofline and the flop counts from the
    NumPy backend). ``jax_products``: the JAX engine's product routes measured
    (:mod:`blursim.sim.jax_blas`): XLA's (the rows above, always) and ``"blas"`` (NumPy's BLAS
    through a host callback; CPU only), whose rows carry the route's name and follow XLA's in
    every round (``res["jax"]["products"]``).
    """
    from blursim.backend import get_backend
    from blursim.sim.engines import engine_name

    load_before = load_average()  # before this run adds its own threads

    only_jax = engine_name(backend_name) == "jax"
    if only_jax:
        from blursim.sim.jax_engine import require_jax

        require_jax()  # a one-line error naming the install command
        backend_name, jax = "numpy", True
    if jax is None:
        jax = jax_rows.available()
    backend = get_backend(backend_name, "float32")
    info = machine_info(backend)
    if quick:
        min_time, rounds = 0.3, 1
        unrolls = (2,)
    log(f"# blursim bench on {info.get('cpu')} ({info.get('cpus')} CPUs), backend {backend.name}")
    roof_gemm = Roofline(backend, (1024,) if quick else None)
    adjacent = (roof_gemm.sizes[0],)  # the smaller size only, before and after every row
    roofs = [roof_gemm(1.0 if not quick else 0.3)]
    log(f"# roofline (float32 GEMM): {roofs[0]:.1f} GFLOP/s")

    wl: dict[tuple, Workload] = {}
    for S in species:
        wl[("paper-es", S)] = Workload(PAPER_ES, S, backend)
    # the same step without the direct BLAS binding, where the binding is on (NumPy backend)
    unbound = None
    if getattr(backend, "_cblas", None) is not None:
        from blursim.backend import NumpyBackend

        unbound = NumpyBackend("float32", blas_binding=False)
        for S in species:
            wl[("paper-es no binding", S)] = Workload(PAPER_ES, S, unbound)
    jwl: dict = {}  # the JAX engine's workloads: paper-es by S, meta-gradients by T (other routes: by route too)
    extra = jax_rows.extra_products(jax_products) if jax else []
    if jax:
        log(f"# JAX engine on {jax_rows.device_info()['device']}: compiling its rows")
        for S in species:
            jwl[S] = jax_rows.JaxWorkload(wl[("paper-es", S)])
            for p in extra:
                jwl[(S, p)] = jax_rows.JaxWorkload(wl[("paper-es", S)], products=p)
        for T in unrolls:
            jwl[("grad", T)] = jax_rows.GradWorkload(PAPER_ES, T)
            for p in extra:
                jwl[("grad", T, p)] = jax_rows.GradWorkload(PAPER_ES, T, products=p)
            jwl[("grad", T, "numpy")] = jax_rows.AdjointWorkload(PAPER_ES, T)
        # the fast engine's T training steps at S = 1, beside each meta-gradient
        wl_fast = wl[("paper-es", 1)] if 1 in species else Workload(PAPER_ES, 1, backend)
    S_loc = 8
    wl[("local-sparse", "blocks")] = Workload(local_sparse_spec(), S_loc, backend, sparse="blocks")
    wl[("local-sparse", "masked")] = Workload(local_sparse_spec(), S_loc, backend, sparse="masked")

    best: dict[str, tuple] = {}  # key -> (times, adjacent roofline)
    peaks: dict[str, int] = {}
    short = 0.25 if not quick else 0.1

    def measure(key, fn, reset, t, **kw):
        r0 = roof_gemm(short, adjacent)
        ts = time_fn(fn, backend, t, reset=reset, **kw)
        r1 = roof_gemm(short, adjacent)
        roofs.extend([r0, r1])
        if key not in best or statistics.median(ts) < statistics.median(best[key][0]):
            best[key] = (ts, 0.5 * (r0 + r1))
        return ts

    fit = None
    binding_pairs: dict[int, list[float]] = {S: [] for S in species}  # without / with, back to back
    monitor_pairs: dict[int, list[float]] = {S: [] for S in species}  # with an empty monitor / without
    pair_ratios: list[float] = []  # masked / blocks time of each back-to-back pair
    jax_pairs: dict[int, list[float]] = {S: [] for S in species}  # Simulator / JAX time, back to back
    grad_pairs: dict[int, list[float]] = {T: [] for T in unrolls}  # value_and_grad / forward time
    fast_pairs: dict[int, list[float]] = {T: [] for T in unrolls}  # value_and_grad / fast engine's T steps
    # the same three ratios of every other product route, measured right after XLA's
    xpairs = {p: ({S: [] for S in species}, {T: [] for T in unrolls}, {T: [] for T in unrolls}) for p in extra}
    # the NumPy meta-gradient engine (blursim.sim.adjoint): value_and_grad / forward, / fast engine's T steps
    npairs: tuple[dict, dict] = ({T: [] for T in unrolls}, {T: [] for T in unrolls})
    for rnd in range(rounds):
        for S in species:
            w = wl[("paper-es", S)]
            if only_jax:
                _jax_step(jwl[S], S, None, measure, peaks, min_time, jax_pairs, log, rnd)
                for p in extra:
                    _jax_step(jwl[(S, p)], S, None, measure, peaks, min_time, xpairs[p][0], log, rnd, p)
                continue
            for train in (True, False):
                key = f"paper-es {'train' if train else 'forward'} S={S}"
                if key not in peaks:
                    peaks[key] = w.memory(train)
                ts = measure(key, *w.step_fn(train), min_time)
                log(f"#   round {rnd + 1}: {key}: {1e3 * statistics.median(ts):.2f} ms/step")
                if train and jax:  # the JAX engine's step, right after
                    _jax_step(jwl[S], S, ts, measure, peaks, min_time, jax_pairs, log, rnd)
                    for p in extra:
                        _jax_step(jwl[(S, p)], S, ts, measure, peaks, min_time, xpairs[p][0], log, rnd, p)
                if train:  # the same step with a monitor that records nothing at it, right after
                    from blursim.sim import Monitor

                    key_mon = f"paper-es train empty monitor S={S}"
                    ts_mon = measure(key_mon, *w.step_fn(True, monitor=Monitor(w.sim, "loss", steps=[])),
                                     min_time)
                    monitor_pairs[S].append(statistics.median(ts_mon) / statistics.median(ts))
                    log(f"#   round {rnd + 1}: {key_mon}: {1e3 * statistics.median(ts_mon):.2f} ms/step")
                if train and unbound is not None:
                    key_off = f"paper-es train no BLAS binding S={S}"
                    wo = wl[("paper-es no binding", S)]
                    if key_off not in peaks:
                        peaks[key_off] = wo.memory(True)
                    ts_off = measure(key_off, *wo.step_fn(True), min_time)
                    binding_pairs[S].append(statistics.median(ts_off) / statistics.median(ts))
                    log(f"#   round {rnd + 1}: {key_off}: {1e3 * statistics.median(ts_off):.2f} ms/step")
            key = f"paper-es products only S={S}"
            ts = measure(key, *products_only(w), min_time / 2)
            log(f"#   round {rnd + 1}: {key}: {1e3 * statistics.median(ts):.2f} ms/step")
        for T in unrolls if jax else ():  # the meta-gradient and its forward unroll, back to back
            g = jwl[("grad", T)]
            med = {}
            for kind in ("forward", "value_and_grad"):
                key = f"meta-gradient {kind} T={T}"
                if key not in peaks:
                    peaks[key] = jax_rows.xla_bytes(g.grad if kind != "forward" else g.forward)
                ts = measure(key, g.fn(kind != "forward"), None, min_time, min_reps=3, max_reps=50)
                med[kind] = statistics.median(ts)
                log(f"#   round {rnd + 1}: {key}: {1e3 * med[kind]:.1f} ms")
            grad_pairs[T].append(med["value_and_grad"] / med["forward"])
            key = f"paper-es train unroll T={T}"  # the fast engine's T steps, right after
            if key not in peaks:
                peaks[key] = wl_fast.memory(True)
            ts = measure(key, *jax_rows.fast_unroll(wl_fast, T), min_time, min_reps=3, max_reps=50, reset_every=1)
            fast_pairs[T].append(med["value_and_grad"] / statistics.median(ts))
            log(f"#   round {rnd + 1}: {key}: {1e3 * statistics.median(ts):.1f} ms")
            for p in extra:  # the other routes' meta-gradients, after the fast engine's T steps
                g, mp = jwl[("grad", T, p)], {}
                for kind in ("forward", "value_and_grad"):
                    key_p = f"meta-gradient {kind} {p} T={T}"
                    if key_p not in peaks:
                        peaks[key_p] = jax_rows.route_bytes(g.grad if kind != "forward" else g.forward,
                                                            g.fn(kind != "forward"))
                    mp[kind] = statistics.median(measure(key_p, g.fn(kind != "forward"), None, min_time, min_reps=3,
                                                         max_reps=50))
                    log(f"#   round {rnd + 1}: {key_p}: {1e3 * mp[kind]:.1f} ms")
                xpairs[p][1][T].append(mp["value_and_grad"] / mp["forward"])
                xpairs[p][2][T].append(mp["value_and_grad"] / statistics.median(ts))
            g, mp = jwl[("grad", T, "numpy")], {}  # the NumPy engine's meta-gradient, the fast steps between
            for kind in ("forward", "value_and_grad"):
                key_n = f"meta-gradient {kind} numpy T={T}"
                if key_n not in peaks:
                    peaks[key_n] = g.peak(kind != "forward")
                mp[kind] = statistics.median(measure(key_n, g.fn(kind != "forward"), None, min_time, min_reps=3,
                                                     max_reps=50))
                log(f"#   round {rnd + 1}: {key_n}: {1e3 * mp[kind]:.1f} ms")
            npairs[0][T].append(mp["value_and_grad"] / mp["forward"])
            npairs[1][T].append(mp["value_and_grad"] / statistics.median(ts))  # the fast engine's T steps above
        if only_jax:
            continue
        for i in range(3):  # blocks and masked dense back to back, three pairs, alternating which goes first
            pair = {}
            for mode in ("blocks", "masked") if i % 2 == 0 else ("masked", "blocks"):
                w = wl[("local-sparse", mode)]
                key = f"local-sparse train {mode} S={S_loc}"
                if key not in peaks:
                    peaks[key] = w.memory(True)
                ts = measure(key, *w.step_fn(True), min_time / 3)
                pair[mode] = statistics.median(ts)
                log(f"#   round {rnd + 1}: {key}: {1e3 * pair[mode]:.2f} ms/step")
            pair_ratios.append(pair["masked"] / pair["blocks"])
        if fit is None:
            fit = fitness_workload(backend, fitness_species)
        fn, pk, _ = fit
        key = f"fitness S={fitness_species}"
        peaks[key] = pk
        ts = measure(key, fn, None, min_time, min_reps=2 if not quick else 1, max_reps=10)
        log(f"#   round {rnd + 1}: {key}: {statistics.median(ts):.3f} s/evaluation")
    roof = max(roofs)
    load = machine_load(load_before, int(info.get("cpus") or 1), roofs[1:] or roofs)

    rows = []
    jax_res = None
    jax_step_rows = {}
    if jax:
        dev = jax_rows.device_info()
        for S in species:
            w = wl[("paper-es", S)]
            key = f"paper-es train jax S={S}"
            fl = w.sim.flops(w.B, train=True)["total"]
            jax_step_rows[S] = [_row(key, S, best[key], fl, roof, peaks[key], {
                "flops_per_genome_step": fl, "device": dev["device"],
                "note": "the JAX engine's jitted reference step, float32; peak: XLA buffer assignment"})]
            for p in extra:
                key = f"paper-es train jax {p} S={S}"
                jax_step_rows[S].append(_row(key, S, best[key], fl, roof, peaks[key], {
                    "flops_per_genome_step": fl, "device": dev["device"], "products": p,
                    "note": f"the JAX step with products={p!r} (blursim.sim.jax_blas); peak: XLA buffer "
                            "assignment + the host memory its callbacks allocate"}))
        grows, summary = jax_rows.grad_rows(best, peaks, grad_pairs, unrolls, fast_pairs)
        jax_res = {"device": dev, "meta_gradient": summary,
                   "speed_ratio": None if only_jax else {str(S): statistics.median(r) for S, r in jax_pairs.items()},
                   "pair_ratios": None if only_jax else {str(S): r for S, r in jax_pairs.items()}}
        nrows, nsummary = jax_rows.grad_rows(best, peaks, npairs[0], unrolls, npairs[1], products="numpy")
        grows.extend(nrows)
        nsummary["note"] = ("the NumPy meta-gradient engine (blursim.sim.adjoint), measured after XLA's rows (and the "
                            "BLAS route's): fast_unroll_ratio against the fast engine's T steps timed after XLA's "
                            "meta-gradient; peaks: tracemalloc of one call")
        jax_res["engines"] = {"numpy": {"meta_gradient": nsummary}}
        if extra:
            jax_res["products"] = {}
        for p in extra:
            steps, gp, fp = xpairs[p]
            prows, psummary = jax_rows.grad_rows(best, peaks, gp, unrolls, fp, products=p)
            grows.extend(prows)
            jax_res["products"][p] = {
                "meta_gradient": psummary,
                "speed_ratio": None if only_jax else {str(S): statistics.median(r) for S, r in steps.items()},
                "pair_ratios": None if only_jax else {str(S): r for S, r in steps.items()}}
    if only_jax:
        rows.extend([r for rs in jax_step_rows.values() for r in rs] + grows)
        res = {"machine": info, "roofline_gflops": roof, "roofline_samples": roofs, "load": load, "rows": rows,
               "jax": jax_res, "command": " ".join(sys.argv), "time": time.strftime("%Y-%m-%d %H:%M:%S")}
        res["targets"] = targets(res)
        return res
    rows.extend(_paper_es_rows(species, wl, best, peaks, roof, jax_step_rows, unbound is not None))
    loc = _local_sparse_rows(wl, S_loc, best, peaks, roof)
    rows.extend(loc.values())
    # the ratio of each back-to-back pair (both measured within about a second, so that the machine's
    # drift cancels), summarised by the median; not the ratio of two rows' best rounds
    ratio = statistics.median(pair_ratios)
    dens = loc["blocks"]["block_density"]
    fkey = f"fitness S={fitness_species}"
    fts, froof = best[fkey]
    med = statistics.median(fts)
    rows.append({"row": fkey, "S": fitness_species, "median_s": med, "best_s": min(fts), "reps": len(fts),
                 "genome_evaluations_per_s": fitness_species / med, "peak_bytes": peaks[fkey], "adjacent_roofline": froof,
                 "evaluation": "15 training steps + 20 query batches of 128"})
    if jax:
        rows.extend(grows)
    binding = None
    if unbound is not None:
        binding = {"status": info.get("blas_binding"),
                   "speed_ratio": {str(S): statistics.median(r) for S, r in binding_pairs.items()},
                   "pair_ratios": {str(S): r for S, r in binding_pairs.items()}}
    res = {
        "machine": info, "roofline_gflops": roof, "roofline_samples": roofs, "load": load, "rows": rows,
        "blas_binding": binding,
        "monitor": {"time_ratio": {str(S): statistics.median(r) for S, r in monitor_pairs.items()},
                    "pair_ratios": {str(S): r for S, r in monitor_pairs.items()}},
        "local_sparse": {"speed_ratio": ratio, "pair_ratios": pair_ratios, "block_density": dens,
                         "target_ratio": 0.5 / dens, "met": ratio >= 0.5 / dens},
        "jax": jax_res,
        "command": " ".join(sys.argv), "time": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    res["targets"] = targets(res)
    return res


def _paper_es_rows(species, wl, best, peaks, roof, jax_step_rows, unbound: bool) -> list[dict]:
    """The ``paper-es`` rows at every S, in the table's order (the JAX step's row, measured,
    after the Simulator's training step)."""
    rows = []
    for S in species:
        w = wl[("paper-es", S)]
        for train in (True, False):
            key = f"paper-es {'train' if train else 'forward'} S={S}"
            fl = w.sim.flops(w.B, train=train)["total"]
            rows.append(_row(key, S, best[key], fl, roof, peaks[key], {"flops_per_genome_step": fl}))
            if train and S in jax_step_rows:
                rows.extend(jax_step_rows[S])
            if train:
                key = f"paper-es train empty monitor S={S}"
                rows.append(_row(key, S, best[key], fl, roof, None, {
                    "flops_per_genome_step": fl, "note": "train_step(monitor=a Monitor recording no step)"}))
            if train and unbound:
                key = f"paper-es train no BLAS binding S={S}"
                rows.append(_row(key, S, best[key], fl, roof, peaks[key], {
                    "flops_per_genome_step": fl, "note": "numpy.matmul products, BLAS threads via threadpoolctl"}))
        key = f"paper-es products only S={S}"
        fl = w.sim.flops(w.B, train=True)["total"]
        rows.append(_row(key, S, best[key], fl, roof, None, {
            "flops_per_genome_step": fl,
            "note": "only the training step's matrix products, same operators and threads: a ceiling"}))
    return rows


def _local_sparse_rows(wl, S_loc, best, peaks, roof) -> dict[str, dict]:
    """The ``local-sparse`` rows by mode (``blocks``, ``masked``)."""
    loc = {}
    for mode in ("blocks", "masked"):
        w = wl[("local-sparse", mode)]
        key = f"local-sparse train {mode} S={S_loc}"
        fl = w.sim.flops(w.B, train=True)["total"]
        op = w.sim.ops[0]
        extra = {"flops_per_genome_step": fl, "stored_slots": op.stored,
                 "synapse_bytes": w.sim.synapse_bytes(w.fresh()[1])}
        if mode == "blocks":
            extra.update(block_density=op.plan.density, tiling=op.plan.describe(),
                         mask_density=float(w.prog.projs[0].mask.mean()))
        loc[mode] = _row(key, S_loc, best[key], fl, roof, peaks[key], extra)
    return loc


def _jax_step(jw, S, ts_sim, measure, peaks, min_time, pairs, log, rnd, products: str = "xla") -> None:
    """The JAX engine's training step of ``paper-es`` at ``S`` (after the Simulator's, whose times
    are ``ts_sim``: their ratio is one back-to-back pair), on the product route ``products``."""
    key = f"paper-es train jax S={S}" if products == "xla" else f"paper-es train jax {products} S={S}"
    if key not in peaks:
        peaks[key] = jw.memory(True) if products == "xla" else jax_rows.route_bytes(jw.compiled(True),
                                                                                     jw.step_fn(True)[0])
    ts = measure(key, *jw.step_fn(True), min_time)
    if ts_sim is not None:
        pairs[S].append(statistics.median(ts_sim) / statistics.median(ts))
    log(f"#   round {rnd + 1}: {key}: {1e3 * statistics.median(ts):.2f} ms/step")
