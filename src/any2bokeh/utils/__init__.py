"""What several runners share: CPU thread scoping, Hydra helpers, the shard sampler, atomic writes.

Imports nothing else of the package.
"""
