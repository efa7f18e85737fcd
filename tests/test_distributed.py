"""Population chunks on a Dask cluster (two local worker processes) equal local evaluation."""

import numpy as np
import pytest

pytest.importorskip("distributed", reason="the 'distributed' extra (Dask) is not installed")

from test_meta_train import files_of, tiny_experiment  # noqa: E402

from blursim.meta import MetaTrainer, meta_train, prepare_experiment  # noqa: E402
from blursim.meta.distributed import DaskExecutor  # noqa: E402
from blursim.meta.evaluate import Protocol  # noqa: E402
from blursim.meta.seeds import train_seeds  # noqa: E402


@pytest.fixture(scope="module")
def executor():
    ex = DaskExecutor(local_workers=2)
    try:
        yield ex
    finally:
        ex.close()


def test_dask_chunks_equal_local_evaluation(executor):
    setup = prepare_experiment(tiny_experiment())
    X = setup.x0 + 0.3 * np.random.default_rng(0).standard_normal((7, setup.layout.size))
    proto = Protocol(4, 16, 2, None, 2, "train")
    seeds = train_seeds(7, 0, 2)
    local = MetaTrainer(setup).evaluator.evaluate(X, "train", seeds, proto)
    remote_ev = MetaTrainer(setup, executor=executor).evaluator
    assert executor.n_workers == 2
    assert len(remote_ev.split(7, "train", proto)) == 2  # one chunk per worker at least
    remote = remote_ev.evaluate(X, "train", seeds, proto)
    for key in ("accuracy", "cross_entropy", "finite"):
        assert np.array_equal(getattr(local, key), getattr(remote, key)), key
    # a worker builds its engine (the compiled network) once and reuses it for every chunk it
    # is sent; which worker gets which chunk is the scheduler's choice, so a worker may get none
    calls = executor.client.run(lambda: sorted(__import__("blursim.meta.evaluate").meta.evaluate._ENGINES))
    assert len(calls) == 2
    assert all(keys in ([], [remote_ev.job.key]) for keys in calls.values())
    assert any(keys == [remote_ev.job.key] for keys in calls.values())


def test_meta_train_on_dask_equals_local(executor, tmp_path):
    exp = tiny_experiment(generations=3)
    meta_train(exp, out=tmp_path / "local")
    meta_train(exp, out=tmp_path / "dask", executor=executor)
    assert files_of(tmp_path / "local") == files_of(tmp_path / "dask")


def test_missing_dask_is_a_clear_error(monkeypatch):
    import builtins

    from blursim.errors import BlursimError
    from blursim.meta import distributed

    real = builtins.__import__

    def no_dask(name, *a, **kw):
        if name == "distributed" or name.startswith("distributed."):
            raise ImportError("No module named 'distributed'")
        return real(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_dask)
    with pytest.raises(BlursimError, match=r"pip install 'blursim\[distributed\]'"):
        distributed.make_executor(local_workers=2)


@pytest.mark.slow  # 12-35 s: three processes each trace and load the JAX unroll (python -m pytest -m slow)
def test_gradient_meta_training_on_dask_equals_local(executor, tmp_path):
    """Issue 25 item 4: the runs' meta-gradients go to the workers (two runs x two draws, one
    contiguous chunk of pairs per worker); the run directory equals the local run's bit for bit."""
    pytest.importorskip("jax")
    from test_gradient_training import gradient_experiment

    from blursim.meta import distributed

    exp = gradient_experiment({"runs": 2, "meta_batch": 2, "learning_rate": 0.05}, generations=2,
                              validation_tasks=[])
    meta_train(exp, out=tmp_path / "local")
    trainer = MetaTrainer(prepare_experiment(exp), executor=executor)
    assert isinstance(trainer.steps.objective, distributed.DaskObjective)
    meta_train(exp, out=tmp_path / "dask", executor=executor)
    assert files_of(tmp_path / "local") == files_of(tmp_path / "dask")
    # both workers computed meta-gradients: each built the experiment's objective once
    built = executor.client.run(lambda: list(__import__("blursim.meta.distributed").meta.distributed._WORKER_OBJECTIVES))
    assert sorted(len(v) for v in built.values()) == [1, 1]


def test_workers_take_the_clients_product_route(monkeypatch):
    """A gradient job carries the client's BLURSIM_JAX_PRODUCTS (a worker's own environment does not
    decide); the worker's objective takes that route, and its numbers equal XLA's (float64)."""
    pytest.importorskip("jax")
    from test_gradient_training import gradient_experiment

    from blursim.errors import BlursimError
    from blursim.meta import distributed
    from blursim.meta.objective import MetaObjective
    from blursim.meta.seeds import gradient_seeds

    setup = prepare_experiment(gradient_experiment(validation_tasks=[]))
    monkeypatch.setenv("BLURSIM_JAX_PRODUCTS", "blas")
    job = distributed.gradient_job(setup, "float64")
    assert job.products == "blas" and job.key != distributed.gradient_job(setup, "float64", "xla").key
    monkeypatch.setenv("BLURSIM_JAX_PRODUCTS", "xla")  # the worker's environment says otherwise
    seeds = gradient_seeds(7, 0, 0, 0, 2)
    (loss, grad, _), = distributed.gradient_chunk(job, [setup.x0], [seeds], setup.train_protocol(0))
    assert distributed._WORKER_OBJECTIVES[job.key].products == "blas"
    want_loss, want_grad, _ = MetaObjective(setup, "train", dtype="float64", products="xla").value_and_grad(
        setup.x0, seeds, setup.train_protocol(0))
    assert loss == pytest.approx(want_loss, rel=1e-12)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-10, atol=1e-12)
    monkeypatch.setenv("BLURSIM_JAX_PRODUCTS", "gpu")
    with pytest.raises(BlursimError, match="BLURSIM_JAX_PRODUCTS must be one of xla, blas"):
        distributed.gradient_job(setup, "float64")
