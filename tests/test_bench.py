"""The benchmark (``blursim bench`` / ``tools/bench.py``): what it counts and what it writes.

Speeds are never asserted (they depend on the machine); the FLOP counts are
checked against counts made by hand from the network, and a quick run must
produce every row, a table and a complete JSON document.
"""

import json

import numpy as np
import pytest

from blursim import bench as bench_pkg
from blursim.backend import get_backend
from blursim.bench.report import format_table
from blursim.bench.timing import machine_load
from blursim.cli import bench

try:
    import jax  # noqa: F401

    HAVE_JAX = True
    BLAS_ROUTE = jax.devices()[0].platform == "cpu"  # the JAX rows' BLAS product route (blursim.sim.jax_blas)
except ImportError:
    HAVE_JAX = BLAS_ROUTE = False


def blas_rows(species, unrolls=(2,)) -> set:
    """The rows of the JAX engine's BLAS product route, where it runs (a CPU)."""
    if not BLAS_ROUTE:
        return set()
    return ({f"paper-es train jax blas S={S}" for S in species}
            | {f"meta-gradient {k} blas T={T}" for k in ("forward", "value_and_grad") for T in unrolls})


@pytest.fixture(scope="module")
def backend():
    return get_backend("numpy", "float32")


def test_paper_es_minimal_flops_match_a_hand_count(backend):
    """Sec. 4.4 network 196 -> 512 -> 10, k = 2, batch 128: forward both projections, backward only
    into the hidden layer (the input is not updated), Hebbian products of W and of untied V."""
    w = bench.Workload(bench.PAPER_ES, 1, backend)
    B, k = 128, 2
    fwd = 2 * B * k * (196 * 512 + 512 * 10)
    bwd = 2 * B * k * (512 * 10)
    heb = 2 * fwd
    got = w.sim.flops(B, train=True)
    assert got["forward"] == fwd == 54_001_664
    assert got["backward"] == bwd
    assert got["hebbian"] == heb
    assert got["total"] == fwd + bwd + heb == 164_626_432
    assert w.sim.flops(B, train=False)["total"] == fwd


def test_local_sparse_counts_only_stored_tiles(backend):
    """Block tiles cost what they store: the local2d projection's count is its stored slots, fewer
    than the dense count, and at least its mask's synapses."""
    blocks = bench.Workload(bench.local_sparse_spec(), 1, backend, sparse="blocks")
    masked = bench.Workload(bench.local_sparse_spec(), 1, backend, sparse="masked")
    op = blocks.sim.ops[0]
    mask = blocks.prog.projs[0].mask
    assert int(mask.sum()) <= op.stored < 784 * 784
    assert op.stored == pytest.approx(op.plan.density * 784 * 784)
    B, k = 128, 2
    assert blocks.sim.flops(B, train=False)["forward"] == 2 * B * k * (op.stored + 784 * 10)
    assert masked.sim.flops(B, train=False)["forward"] == 2 * B * k * (784 * 784 + 784 * 10)


def test_products_only_runs_the_steps_products(backend, monkeypatch):
    """The ceiling row makes the same matrix products as a training step (the same gemm shapes, as
    many times), for one genome and for several, with worker threads."""
    for S in (1, 3):
        w = bench.Workload(bench.PAPER_ES, S, backend)
        calls: list = []
        gemm = type(backend).gemm

        def record(self, A, B, C, alpha=1.0, beta=0.0):
            calls.append((A.shape[-2:], B.shape[-2:], C.shape))
            return gemm(self, A, B, C, alpha, beta)

        monkeypatch.setattr(type(backend), "gemm", record)
        fn, reset = bench.products_only(w)
        fn()
        products = sorted(calls)
        calls.clear()
        step, _ = w.step_fn(True)
        step()
        monkeypatch.undo()
        assert reset is None
        assert products == sorted(calls) and len(products) >= 7  # 7 products per chunk of species


@pytest.mark.slow  # 17-40 s: the whole quick benchmark (the rows' parts are tested above and below)
def test_quick_run_writes_every_row_and_a_complete_json(tmp_path, capsys, backend):
    bound = backend._cblas is not None  # the rows without the BLAS binding need it to be on
    out = tmp_path / "bench.json"
    rc = bench.main(["--quick", "--species", "1,2", "--fitness-species", "2", "--json", str(out)])
    assert rc == 0
    res = json.loads(out.read_text())
    rows = {r["row"]: r for r in res["rows"]}
    want = {f"paper-es {kind} S={S}" for S in (1, 2)
            for kind in ("train", "forward", "products only", "train empty monitor")
            + (("train no BLAS binding",) if bound else ())}
    want |= {"local-sparse train blocks S=8", "local-sparse train masked S=8", "fitness S=2"}
    jax_rows = ({"paper-es train jax S=1", "paper-es train jax S=2", "meta-gradient forward T=2",
                 "meta-gradient value_and_grad T=2", "paper-es train unroll T=2"} | blas_rows((1, 2))
                if HAVE_JAX else set())
    assert set(rows) == want | jax_rows
    check_jax_part(res, rows, (1, 2))
    for name, r in rows.items():
        assert r["median_s"] > 0 and r["best_s"] <= r["median_s"] and r["adjacent_roofline"] > 0
        if "genome_steps_per_s" in r:
            assert r["genome_steps_per_s"] == pytest.approx(r["S"] / r["median_s"])
            assert r["gflops"] == pytest.approx(r["S"] * r["flops_per_genome_step"] / r["median_s"] / 1e9)
            assert r["pct_roofline"] == pytest.approx(100 * r["gflops"] / r["adjacent_roofline"])
    assert rows["fitness S=2"]["genome_evaluations_per_s"] == pytest.approx(2 / rows["fitness S=2"]["median_s"])
    assert rows["paper-es products only S=1"]["peak_bytes"] is None
    assert rows["paper-es train S=1"]["peak_bytes"] > 0
    ls = res["local_sparse"]
    assert len(ls["pair_ratios"]) == 3 and ls["speed_ratio"] == pytest.approx(np.median(ls["pair_ratios"]))
    assert ls["target_ratio"] == pytest.approx(0.5 / ls["block_density"])
    assert ls["met"] == (ls["speed_ratio"] >= ls["target_ratio"])
    bb = res["blas_binding"]
    assert (bb is not None) == bound
    for S in ("1", "2") if bound else ():
        assert len(bb["pair_ratios"][S]) == 1 and bb["speed_ratio"][S] == pytest.approx(
            rows[f"paper-es train no BLAS binding S={S}"]["median_s"] / rows[f"paper-es train S={S}"]["median_s"])
    for S in ("1", "2"):  # the empty monitor's pair is measured back to back with the plain step
        assert len(res["monitor"]["pair_ratios"][S]) == 1 and res["monitor"]["time_ratio"][S] > 0
    assert rows["paper-es train empty monitor S=1"]["flops_per_genome_step"] == rows["paper-es train S=1"][
        "flops_per_genome_step"]
    assert res["roofline_gflops"] == max(res["roofline_samples"])
    ld = res["load"]
    assert ld["cpus"] == res["machine"]["cpus"] and ld["loaded"] == bool(ld["reasons"])
    assert ld["roofline_min"] <= ld["roofline_max"] <= res["roofline_gflops"]
    assert res["machine"]["backend"] == "numpy" and res["machine"]["cpus"] >= 1
    table = capsys.readouterr().out
    assert ("MACHINE LOADED" in table) == ld["loaded"] and ("machine quiet" in table) != ld["loaded"]
    for name in want:
        assert name in table
    assert "block density" in table and ("BLAS binding (on" in table) == bound and "empty monitor:" in table
    for name in jax_rows:
        assert name in table
    assert ("meta-gradient T = 2: value_and_grad / forward unroll time" in table) == HAVE_JAX
    check_targets(res, table, jax_rows)


def check_targets(res, table, jax_rows, blas: bool = BLAS_ROUTE) -> None:
    """The issue-25 targets: each one the run measured, with its value taken from the rows and
    ratios above, its verdict, and its line in the table."""
    t = {x["name"]: x for x in res["targets"]}
    rows = {r["row"]: r for r in res["rows"]}
    fit = next((r for r in res["rows"] if r["row"].startswith("fitness")), None)
    want = set()
    if fit is not None:
        name = "Sec. 4.4 run (400 generations x 80), estimated"
        want.add(name)
        assert t[name]["value"] == pytest.approx(400 * 80 / fit["genome_evaluations_per_s"] / 60)
        assert t[name]["target"] == 10 and t[name]["op"] == "<="
    if "paper-es train S=80" in rows:
        want.add("paper-es train S=80, % of adjacent roofline")
    if jax_rows:
        jx = res["jax"]
        if jx["speed_ratio"] is not None:
            want.add("JAX step / fast step speed, S = 1")
            assert t["JAX step / fast step speed, S = 1"]["value"] == jx["speed_ratio"]["1"]
            assert t["JAX step / fast step speed, S = 1"]["target"] == 0.9
        mg = jx["meta_gradient"]
        want |= {"value_and_grad / forward unroll, T = 2", "meta-gradient / fast engine's 2 steps, T = 2"}
        fast = t["meta-gradient / fast engine's 2 steps, T = 2"]
        assert fast["value"] == pytest.approx(np.median(mg["fast_pair_ratios"]["2"])) and fast["target"] == 3
        vg, unroll = rows["meta-gradient value_and_grad T=2"], rows["paper-es train unroll T=2"]
        assert unroll["unroll"] == 2 and len(mg["fast_pair_ratios"]["2"]) == 1
        assert fast["value"] == pytest.approx(vg["median_s"] / unroll["median_s"])  # one round: one pair
        # the NumPy meta-gradient engine (blursim.sim.adjoint): the same two targets, its own pairs
        ng = jx["engines"]["numpy"]["meta_gradient"]
        want |= {"value_and_grad / forward unroll, T = 2 [numpy engine]",
                 "meta-gradient / fast engine's 2 steps, T = 2 [numpy engine]"}
        nfast = t["meta-gradient / fast engine's 2 steps, T = 2 [numpy engine]"]
        assert len(ng["fast_pair_ratios"]["2"]) == 1 and nfast["value"] == pytest.approx(ng["fast_pair_ratios"]["2"][0])
        assert t["value_and_grad / forward unroll, T = 2 [numpy engine]"]["value"] == pytest.approx(
            rows["meta-gradient value_and_grad numpy T=2"]["median_s"] / rows["meta-gradient forward numpy T=2"]["median_s"])
        if blas:  # the same targets for the BLAS product route, its meta-gradient over the same unroll
            bl = jx["products"]["blas"]
            names = {"value_and_grad / forward unroll, T = 2 [blas products]",
                     "meta-gradient / fast engine's 2 steps, T = 2 [blas products]"}
            if bl["speed_ratio"] is not None:
                names.add("JAX step / fast step speed, S = 1 [blas products]")
                assert t["JAX step / fast step speed, S = 1 [blas products]"]["value"] == bl["speed_ratio"]["1"]
            want |= names
            vgb = rows["meta-gradient value_and_grad blas T=2"]
            assert t["meta-gradient / fast engine's 2 steps, T = 2 [blas products]"]["value"] == pytest.approx(
                vgb["median_s"] / unroll["median_s"])
    assert set(t) == want
    for x in t.values():
        assert x["met"] == (x["value"] <= x["target"] if x["op"] == "<=" else x["value"] >= x["target"])
        assert x["name"] in table
    assert ("targets (issue 25):" in table) == bool(want)


def check_jax_part(res, rows, species, blas: bool = BLAS_ROUTE) -> None:
    """The JAX rows: a step and a meta-gradient that cost time and memory, their ratios."""
    if not HAVE_JAX:
        assert res["jax"] is None
        return
    jx = res["jax"]
    assert jx["device"]["platform"] in ("cpu", "gpu", "cuda", "rocm", "tpu")
    for S in species:
        r = rows[f"paper-es train jax S={S}"]
        assert r["median_s"] > 0 and r["peak_bytes"] > 0
        assert r["flops_per_genome_step"] == rows.get(f"paper-es train S={S}", r)["flops_per_genome_step"]
    mg = jx["meta_gradient"]
    fwd, vg = rows["meta-gradient forward T=2"], rows["meta-gradient value_and_grad T=2"]
    assert vg["unroll"] == fwd["unroll"] == 2 and mg["time_ratio"]["2"] == pytest.approx(np.median(mg["pair_ratios"]["2"]))
    # reverse mode keeps one synapse state per step: more memory than the forward unroll
    assert mg["peak_bytes"]["2"]["value_and_grad"] > mg["peak_bytes"]["2"]["forward"] > 0
    if jx["speed_ratio"] is not None:
        for S in species:
            assert jx["speed_ratio"][str(S)] == pytest.approx(np.median(jx["pair_ratios"][str(S)]))
    ng = jx["engines"]["numpy"]["meta_gradient"]  # the NumPy engine: its tape holds every step
    assert ng["peak_bytes"]["2"]["value_and_grad"] > 0 and ng["peak_bytes"]["2"]["forward"] > 0
    assert rows["meta-gradient value_and_grad numpy T=2"]["median_s"] > 0
    if blas:  # the BLAS product route: its own rows, ratios and peaks (XLA's buffers + the callbacks')
        bl = jx["products"]["blas"]
        for S in species:
            r = rows[f"paper-es train jax blas S={S}"]
            assert r["products"] == "blas" and r["median_s"] > 0 and r["peak_bytes"] > 0
        assert bl["meta_gradient"]["time_ratio"]["2"] == pytest.approx(np.median(bl["meta_gradient"]["pair_ratios"]["2"]))
        assert bl["meta_gradient"]["peak_bytes"]["2"]["value_and_grad"] > 0


def test_jax_backend_runs_only_the_jax_rows(tmp_path, capsys):
    pytest.importorskip("jax")
    out = tmp_path / "bench.json"
    # XLA's products only (the BLAS route's rows: the slow quick run above), to keep the suite short
    assert bench.main(["--backend", "jax", "--quick", "--species", "1", "--jax-products", "xla",
                       "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    rows = {r["row"]: r for r in res["rows"]}
    assert set(rows) == {"paper-es train jax S=1", "meta-gradient forward T=2", "meta-gradient value_and_grad T=2",
                         "paper-es train unroll T=2", "meta-gradient forward numpy T=2",
                         "meta-gradient value_and_grad numpy T=2"}
    assert "products" not in res["jax"]
    assert res["jax"]["speed_ratio"] is None and "local_sparse" not in res
    check_jax_part(res, rows, (1,), blas=False)
    table = capsys.readouterr().out
    assert "JAX engine on" in table
    check_targets(res, table, rows, blas=False)


def test_jax_backend_without_the_extra_names_the_install_command(monkeypatch, capsys):
    import sys

    from blursim.cli.main import main

    monkeypatch.setitem(sys.modules, "jax", None)
    assert main(["bench", "--backend", "jax", "--quick"]) == 2
    assert 'pip install -e ".[jax]"' in capsys.readouterr().err


def test_no_jax_with_the_jax_backend_is_refused(capsys):
    from blursim.cli.main import main

    assert main(["bench", "--backend", "jax", "--no-jax", "--quick"]) == 2
    err = capsys.readouterr().err
    assert "--no-jax" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("argv", [["--species", "1,x"], ["--species", "0"], ["--rounds", "0"],
                                  ["--fitness-species", "-3"], ["--unrolls", "0"]])
def test_bad_arguments_are_usage_errors(argv, tmp_path):
    with pytest.raises(SystemExit) as e:
        bench.main(argv + ["--json", str(tmp_path / "never.json")])
    assert e.value.code == 2
    assert not (tmp_path / "never.json").exists()


def test_roofline_is_a_positive_rate_and_keeps_its_operands(backend):
    roof = bench.Roofline(backend, (128, 256))
    r = roof(0.02)
    assert np.isfinite(r) and r > 0
    a = roof._operands(128)[0]
    roof(0.01, (128,))
    assert roof._operands(128)[0] is a


def test_the_old_names_stay_importable_from_the_cli_module():
    """tools/bench_ab.py times old and new checkouts through blursim.cli.bench's names."""
    assert bench.Workload is bench_pkg.Workload and bench.PAPER_ES is bench_pkg.PAPER_ES
    assert bench.products_only is bench_pkg.products_only and bench._time is bench_pkg.time_fn
    from blursim.cli import bench_jax

    assert callable(bench_jax.available) and callable(bench_jax.format_lines)


def test_machine_load_from_load_average_and_roofline_spread():
    quiet = machine_load(0.3, 2, [400.0, 380.0, 390.0])
    assert not quiet["loaded"] and quiet["reasons"] == [] and quiet["spread"] == pytest.approx(0.05)
    busy = machine_load(3.0, 2, [400.0, 390.0])  # others kept 3 CPUs busy on a 2-CPU machine
    assert busy["loaded"] and busy["reasons"] == ["load average 3.0 on 2 CPUs before the run"]
    uneven = machine_load(None, 2, [400.0, 100.0, 380.0])  # no load average, rooflines 4x apart
    assert uneven["loaded"] and uneven["spread"] == pytest.approx(0.75)
    assert "100-400 GFLOP/s (75 % apart)" in uneven["reasons"][0]
    assert machine_load(None, 4, [])["loaded"] is False


def test_a_loaded_machine_is_said_with_what_it_does_to_percentages_and_verdicts():
    row = {"row": "paper-es train S=1", "S": 1, "median_s": 0.01, "genome_steps_per_s": 100.0, "gflops": 16.5,
           "adjacent_roofline": 2.9, "pct_roofline": 567.5, "pct_best_roofline": 4.1, "peak_bytes": None}
    res = {"machine": {"cpu": "x", "cpus": 2, "numpy": "2", "backend": "numpy"}, "roofline_gflops": 400.0,
           "rows": [row], "local_sparse": {"block_density": 0.1, "speed_ratio": 3.0, "pair_ratios": [3.0],
                                          "target_ratio": 5.0, "met": False}}
    loaded = format_table({**res, "load": machine_load(5.0, 2, [400.0, 2.9])})
    assert "MACHINE LOADED: load average 5.0 on 2 CPUs before the run; the rooflines" in loaded
    assert "567.5%!" in loaded and "NOT met (machine loaded: uncertain)" in loaded
    quiet = format_table({**res, "load": machine_load(0.1, 2, [400.0, 390.0])})
    assert "machine quiet: load average 0.1 on 2 CPUs" in quiet and "uncertain" not in quiet
    assert "target >= 5.00x: NOT met)" in quiet


def test_targets_from_a_hand_made_run():
    """Every issue-25 target from rows and ratios written here: values, directions, verdicts."""
    from blursim.bench.targets import format_targets, targets

    res = {"rows": [{"row": "fitness S=80", "S": 80, "genome_evaluations_per_s": 16.0},
                    {"row": "paper-es train S=80", "S": 80, "pct_roofline": 49.0, "gflops": 49.0,
                     "adjacent_roofline": 100.0}],
           "jax": {"speed_ratio": {"1": 0.95, "8": 0.1, "80": 0.5},
                   "meta_gradient": {"time_ratio": {"10": 4.5}, "fast_unroll_ratio": {"10": 2.5}},
                   "products": {"blas": {"speed_ratio": {"1": 0.8},
                                         "meta_gradient": {"time_ratio": {"10": 3.5}, "fast_unroll_ratio": {"10": 3.5}}}}},
           "load": {"loaded": False}}
    t = {x["name"]: x for x in targets(res)}
    want = {"Sec. 4.4 run (400 generations x 80), estimated": (400 * 80 / 16 / 60, False),  # 33.3 min
            "paper-es train S=80, % of adjacent roofline": (49.0, False),
            "JAX step / fast step speed, S = 1": (0.95, True),
            "JAX step / fast step speed, S = 80": (0.5, False),
            "value_and_grad / forward unroll, T = 10": (4.5, False),
            "meta-gradient / fast engine's 10 steps, T = 10": (2.5, True),
            "JAX step / fast step speed, S = 1 [blas products]": (0.8, False),
            "value_and_grad / forward unroll, T = 10 [blas products]": (3.5, True),
            "meta-gradient / fast engine's 10 steps, T = 10 [blas products]": (3.5, False)}
    assert {n: (x["value"], x["met"]) for n, x in t.items()} == want
    assert "extrapolation" not in t["Sec. 4.4 run (400 generations x 80), estimated"]["note"]
    res["targets"] = list(t.values())
    text = "\n".join(format_targets(res))
    assert text.count("NOT met") == 6 and text.count(": met") == 3 and "33.33 min" in text
    res["rows"][0].update(row="fitness S=2", S=2)  # another population: said to be an extrapolation
    assert "extrapolation" in targets(res)[0]["note"]
