"""``python -m classify_client.cli``: the same command as the ``classify`` script."""

from __future__ import annotations

import os
import sys

from .app import main

if __name__ == "__main__":  # pragma: no cover - run only as a script
    main(prog_name=os.path.basename(sys.argv[0]))
