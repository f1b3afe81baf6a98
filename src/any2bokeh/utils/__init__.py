"""What several runners share: CPU thread scoping, Hydra helpers, the shard sampler, atomic writes, model folder
checks.

Imports nothing else of the package.
"""
