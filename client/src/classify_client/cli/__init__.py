"""The ``classify`` command line, one module per command group; nothing here is part of the library API.

- ``app``: the ``classify`` group, its shared options, and the command list; ``common``: what every
  command uses (the connection, ``--target``, the fatal-error exit).
- Commands: ``score``, ``bench``, ``models`` (``models``, ``load``, ``unload``), ``health``.
- What only those commands use: the batch-scoring job (``score_job``, ``scoring``, ``resume``, ``inputs``,
  ``labels``, ``outputs``, ``report``, ``progress``), the load generator and its report
  (``load_generator``, ``bench_report``) and the KServe V2 backend (``v2_protocol``).
"""

from __future__ import annotations

from .app import main

__all__ = ["main"]
