#!/usr/bin/env python
"""Probe (issue 25 item 2): what the reference's channel-last synapse layout costs XLA:CPU.

    python tools/jax_layout_probe.py

The reference step (blursim/sim/reference.py) stores synapses as ``W[s, r, i, j, c]`` (channel
last) and contracts them with ``einsum("srijc,srbic->srbjc")`` (forward) and
``einsum("srbic,srbjc->srijc")`` (Hebbian outer product). XLA's dot wants the batch dimensions
(s, r, c) leading, so it transposes around every such product. This times each product on
the ``paper-es`` shapes (196 -> 512, k = 2, batch 128) at S = 1 and 80 in the reference layout
and with the channel moved before the matrix dimensions; the step itself is not changed.
"""
import time, statistics, numpy as np, jax, jax.numpy as jnp
def t(f, *a, n=7):
    jax.block_until_ready(f(*a)); ts=[]
    for _ in range(n):
        t0=time.perf_counter(); jax.block_until_ready(f(*a)); ts.append(time.perf_counter()-t0)
    return statistics.median(ts)
B,I,J,k=128,196,512,2
for S in (1,80):
    rng=np.random.default_rng(0)
    W=jnp.asarray(rng.standard_normal((S,1,I,J,k)),jnp.float32)   # channel last (reference layout)
    a=jnp.asarray(rng.standard_normal((S,1,B,I,k)),jnp.float32)
    Wc=jnp.asarray(np.moveaxis(np.asarray(W),-1,2).copy())          # (s,r,c,i,j)
    ac=jnp.asarray(np.moveaxis(np.asarray(a),-1,2).copy())          # (s,r,c,b,i)
    f_last=jax.jit(lambda W,a: jnp.einsum("srijc,srbic->srbjc",W,a))
    f_first=jax.jit(lambda W,a: jnp.einsum("srcij,srcbi->srcbj",W,a))
    h_last=jax.jit(lambda P,Q: jnp.einsum("srbic,srbjc->srijc",P,Q))
    h_first=jax.jit(lambda P,Q: jnp.einsum("srcbi,srcbj->srcij",P,Q))
    b=jnp.asarray(rng.standard_normal((S,1,B,J,k)),jnp.float32); bc=jnp.asarray(np.moveaxis(np.asarray(b),-1,2).copy())
    x=[t(f_last,W,a),t(f_first,Wc,ac),t(h_last,a,b),t(h_first,ac,bc)]
    flops=2*S*B*I*J*k
    print(f"S={S}: forward product channel-last {1e3*x[0]:.2f} ms, channel-first {1e3*x[1]:.2f} ms ({x[0]/x[1]:.2f}x); "
          f"Hebbian outer product channel-last {1e3*x[2]:.2f} ms, channel-first {1e3*x[3]:.2f} ms ({x[2]/x[3]:.2f}x); "
          f"GFLOP/s forward {flops/x[0]/1e9:.1f} vs {flops/x[1]/1e9:.1f}")
