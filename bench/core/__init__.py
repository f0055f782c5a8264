"""The ground floor: what every package of hemabench may import (extractors, tasks, protocols, the trainer and
the leaderboard import nothing else of the harness).

- :mod:`bench.core.errors`: the one error family; every message names the file, key or argument and the fix.
- :mod:`bench.core.registry`: the one registry idiom (names, lazy ``module:attr`` targets, schemes such as
  ``timm:``, files ``path.py:Name``, entry points).
- :mod:`bench.core.settings`: where things live (``$BENCH_HOME``).
- :mod:`bench.core.files`: sha256 of files and payloads, atomic writes.
- :mod:`bench.core.metrics`: the metric names, written once, and their scikit-learn implementations.
- :mod:`bench.core.design`: what a protocol evaluates (rows or bags, labels, splits), made by tasks.
- :mod:`bench.core.record`: the typed result record and where it lives on disk.

Nothing here imports torch; the modules import what they need lazily, so ``import bench.core.x`` stays cheap.
"""
