"""Print the third-party requirements of this repository's distributions, one a line.

The image build installs these (pinned by constraints.txt) in a layer of their own before copying the
sources, so editing code does not re-download TensorFlow. Usage:
``python requirements.py client/pyproject.toml 'server/pyproject.toml[cpu]'``. Our own distributions
(``classify-*``) are left out: they are installed from the sources afterwards.
"""

from __future__ import annotations

import re
import sys
import tomllib


def requirements(argument: str) -> list[str]:
    path, _, extras = argument.partition("[")
    with open(path, "rb") as file:
        project = tomllib.load(file)["project"]
    wanted = list(project.get("dependencies", []))
    for extra in filter(None, extras.rstrip("]").split(",")):
        wanted += project["optional-dependencies"][extra.strip()]
    return [r for r in wanted if not re.match(r"classify-", r)]


if __name__ == "__main__":
    print("\n".join(sorted({r for argument in sys.argv[1:] for r in requirements(argument)})))
