"""Distillation: losses as pure functions (`losses`), teacher wrappers and schedules.

Import the submodules directly (`from lc0distill.distill.losses import ...`); this file imports nothing.
"""
