"""Package list for setuptools; all other metadata is in pyproject.toml.

The top-level folders runtime/, models/ and kernels_cl/ install as subpackages of
graphc, so `graphc` stays the only top-level import name.
"""

from pathlib import Path

from setuptools import find_packages, setup

MAPPED_FOLDERS = {
    "graphc.runtime": "runtime",
    "graphc.models": "models",
    "graphc.kernels_cl": "kernels_cl",
}


def existing_mapped_folders():
    # A folder nobody has written yet must not break the install of the rest.
    return {name: folder for name, folder in MAPPED_FOLDERS.items() if Path(folder).is_dir()}


def mapped_packages():
    """Each mapped folder and its subpackages, named under graphc."""
    for name, folder in existing_mapped_folders().items():
        yield name
        yield from (f"{name}.{sub}" for sub in find_packages(folder))


setup(
    packages=find_packages(include=["graphc", "graphc.*"]) + list(mapped_packages()),
    package_dir=existing_mapped_folders(),
)
