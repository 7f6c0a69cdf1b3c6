"""The synthetic world and what runs in it: the catalog, users and behaviour model, the logging
policy, the generator, the replay of a method's lists, the live experiment and the truth checks.

pipelines/ reaches this package only through its generate and experiment steps and the training
hook (pipelines/hooks.py); this package reads from pipelines/ only its configuration and data io.
"""
