"""Property-testing kit for BLUR update rules (Hypothesis strategies and assertions).

``from blursim.testing import strategies as bst`` gives Hypothesis strategies
for network specs, genomes, data batches and synapse states; blursim's own
property tests use the same strategies.
"""
