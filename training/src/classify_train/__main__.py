"""``python -m classify_train`` is ``classify-train``."""

from classify_train.cli import main

main()
