"""The table that ``blursim bench`` prints from :func:`blursim.bench.runner.run_benchmark`'s
results."""

from __future__ import annotations


def verdict(met: bool, res: dict) -> str:
    """``met`` / ``NOT met`` against a target, with a word of doubt when the machine was loaded."""
    word = "met" if met else "NOT met"
    return word + (" (machine loaded: uncertain)" if _loaded(res) else "")


def _loaded(res: dict) -> bool:
    return bool((res.get("load") or {}).get("loaded"))


def load_lines(res: dict) -> list[str]:
    """What the machine's load was and what it does to the table's percentages and verdicts."""
    ld = res.get("load")
    if not ld:
        return []
    if not ld["loaded"]:
        la = "unknown" if ld["load_average"] is None else f"{ld['load_average']:.1f}"
        spread = "" if ld["spread"] is None else f"; the rooflines around the rows within {100 * ld['spread']:.0f} %"
        return [f"machine quiet: load average {la} on {ld['cpus']} CPUs before the run{spread}"]
    return [
        f"MACHINE LOADED: {'; '.join(ld['reasons'])}.",
        "  Other work shared the CPUs, and it slows the rows and the rooflines measured around them",
        "  unequally: '% roof' may overstate the step's",
        "  efficiency (above 100 %, marked '!', the GEMM beside the row was slowed more than the row) or",
        "  understate it, and '% best' (against the run's fastest roofline) understates it; read them as",
        "  bounds, and every 'met' / 'NOT met' below as uncertain. Ratios of back-to-back pairs suffer",
        "  least. Rerun on a quiet machine for numbers to quote.",
    ]


def _pct(value) -> str:
    """A percentage of the roofline in 7 characters; above 100 % (impossible on a quiet machine)
    marked with '!'."""
    v = value or 0.0
    return f"{v:>5.1f}%!" if v > 100.0 else f"{v:>6.1f}%"


def format_table(res: dict) -> str:
    m = res["machine"]
    lines = [
        f"machine: {m.get('cpu')}, {m.get('cpus')} CPUs, numpy {m.get('numpy')}"
        + (f", BLAS {m['blas']} {m.get('blas_version', '')}" if m.get("blas") else "")
        + f", backend {m.get('backend')}"
        + (f", device {m['device']} (CuPy {m.get('cupy')})" if m.get("device") else "")
        + (f", commit {m['commit']}" if m.get("commit") else ""),
        f"roofline (float32 GEMM, this run): best {res['roofline_gflops']:.1f} GFLOP/s; "
        "'% roof' is against the roofline measured right before and after each row",
        *load_lines(res),
        "",
        f"{'row':<37} {'S':>3} {'ms/step':>9} {'genome-steps/s':>14} {'GFLOP/s':>8} {'roof':>6} "
        f"{'% roof':>7} {'% best':>7} {'peak MiB':>9}",
    ]
    for r in res["rows"]:
        if "unroll" in r:  # a meta-loss (and gradient) through the unroll: time per evaluation
            peak = f"{r['peak_bytes'] / 2**20:>9.1f}" if r.get("peak_bytes") is not None else f"{'':>9}"
            lines.append(f"{r['row']:<37} {r['S']:>3} {1e3 * r['median_s']:>9.1f} "
                         f"{r['unroll_steps_per_s']:>8.1f} st/s {'':>8} {r['adjacent_roofline']:>6.0f} "
                         f"{'':>7} {'':>7} {peak}")
            continue
        if "genome_evaluations_per_s" in r:
            lines.append(f"{r['row']:<37} {r['S']:>3} {1e3 * r['median_s']:>9.1f} "
                         f"{r['genome_evaluations_per_s']:>9.2f} ev/s {'':>8} {r['adjacent_roofline']:>6.0f} "
                         f"{'':>7} {'':>7} {r['peak_bytes'] / 2**20:>9.1f}")
            continue
        lines.append(
            f"{r['row']:<37} {r['S']:>3} {1e3 * r['median_s']:>9.2f} {r['genome_steps_per_s']:>14.1f} "
            f"{r.get('gflops', 0):>8.1f} {r['adjacent_roofline']:>6.0f} {_pct(r.get('pct_roofline'))} "
            f"{_pct(r.get('pct_best_roofline'))} "
            + (f"{r['peak_bytes'] / 2**20:>9.1f}" if r.get("peak_bytes") is not None else f"{'':>9}"))
    def pairs(title, ratio, pair_ratios, digits):
        ratios = ", ".join(f"S = {S} {v:.{digits}f}x" for S, v in ratio.items())
        n = min(len(v) for v in pair_ratios.values())
        lines.extend(["", f"{title}, {ratios} (median of {n} back-to-back pairs per S)"])

    bb = res.get("blas_binding")
    if bb:
        pairs(f"BLAS binding ({bb['status']}): training step with it vs without", bb["speed_ratio"],
              bb["pair_ratios"], 2)
    mon = res.get("monitor")
    if mon:
        pairs("empty monitor: training step time with / without it", mon["time_ratio"], mon["pair_ratios"], 3)
    ls = res.get("local_sparse")
    if ls:
        lines.append("")
        pr = ls.get("pair_ratios") or [ls["speed_ratio"]]
        lines.append(f"local-sparse: block density {ls['block_density']:.3f}, blocks vs masked dense speed ratio "
                     f"{ls['speed_ratio']:.2f}x (median of {len(pr)} back-to-back pairs, "
                     f"{min(pr):.2f}-{max(pr):.2f}x; target >= {ls['target_ratio']:.2f}x: "
                     f"{verdict(ls['met'], res)})")
    lines.extend(format_lines(res))
    lines.extend(format_targets(res))
    return "\n".join(lines)


def format_targets(res: dict) -> list[str]:
    from blursim.bench.targets import format_targets as lines

    return lines(res)


def format_lines(res: dict) -> list[str]:
    """The table's lines about the JAX engine (none when it was not measured)."""
    jx = res.get("jax")
    if not jx:
        return []
    lines = ["", f"JAX engine on {jx['device']['device']} (jax {jx['device']['jax']})"]
    lines.extend(_route_lines(jx, res, ""))
    for p, sub in (jx.get("products") or {}).items():
        lines.append(f"  products={p!r} (blursim.sim.jax_blas), measured right after XLA's rows:")
        lines.extend(_route_lines(sub, res, "  "))
    return lines


def _route_lines(jx: dict, res: dict, indent: str) -> list[str]:
    """The JAX engine's three ratios on one product route."""
    lines = []
    if jx.get("speed_ratio"):
        n = min(len(v) for v in jx["pair_ratios"].values())
        ratios = ", ".join(f"S = {S} {v:.2f}x" for S, v in jx["speed_ratio"].items())
        lines.append(f"{indent}  training step, Simulator time / JAX time: {ratios} (median of {n} back-to-back pairs)")
    mg = jx.get("meta_gradient")
    if mg:
        for T, r in mg["time_ratio"].items():
            pk = mg["peak_bytes"][T]
            mem = ("" if pk["value_and_grad"] is None else
                   f"; peak memory {pk['forward'] / 2**20:.1f} MiB forward, {pk['value_and_grad'] / 2**20:.1f} MiB "
                   "value_and_grad")
            lines.append(f"{indent}  meta-gradient T = {T}: value_and_grad / forward unroll time {r:.2f}x "
                         f"(target <= 4x: {verdict(r <= 4, res)}){mem}")
        for T, r in (mg.get("fast_unroll_ratio") or {}).items():
            pk = mg["fast_unroll_peak_bytes"].get(T)
            mem = "" if pk is None else f"; fast engine's peak {pk / 2**20:.1f} MiB"
            lines.append(f"{indent}  meta-gradient T = {T}: value_and_grad / fast engine's {T} training steps "
                         f"{r:.2f}x (target <= 3x: {verdict(r <= 3, res)}){mem}")
    return lines
