"""Interoperation with upstream SLIM-Diff (PyPI `slim-diff` 1.0.0): read its Lightning checkpoints.

checkpoint.py reads a `.ckpt` without running its pickled code; config_map.py turns upstream's training config
into this project's run config (or names the key that has no counterpart); convert.py maps the weights and
writes a model.pt that generation, metrics and the table use like any trained run.
"""
