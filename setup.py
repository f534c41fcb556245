"""Package discovery for the one ``clbench`` distribution.

DESIGN.md keeps the user-facing folders at the top level (scenarios/, methods/,
kernels/) but installs them as ``clbench.scenarios`` etc., so nothing claims a
generic top-level import name. Sub-packages are found by walking the folders,
so adding one needs no edit here.
"""

import os

from setuptools import setup

PACKAGE_DIRS = {
    "clbench": "clbench",
    "clbench.scenarios": "scenarios",
    "clbench.methods": "methods",
    "clbench.kernels": "kernels",
}


def walk(name: str, folder: str):
    yield name
    for child in sorted(os.listdir(folder)):
        path = os.path.join(folder, child)
        if (
            os.path.isfile(os.path.join(path, "__init__.py"))
            and f"{name}.{child}" not in PACKAGE_DIRS
        ):
            yield from walk(f"{name}.{child}", path)


setup(
    package_dir=PACKAGE_DIRS,
    packages=[p for name, folder in PACKAGE_DIRS.items() for p in walk(name, folder)],
)
