"""Meta-learning: evolving BLUR genomes with evolution strategies.

``blursim.meta.strategies`` holds the strategies (CMA-ES, sep-CMA-ES,
OpenAI-ES) behind one ask/tell interface with explicit, checkpointable state.
"""
