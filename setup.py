"""Packaging: everything is in pyproject.toml except the package list.

conf/ lies at the top of the repository (where users read and edit it) but installs as the
package `speechrecipe.conf`; setuptools' automatic discovery cannot find a package whose folder
is mapped elsewhere, so it is named here.
"""
from setuptools import find_namespace_packages, setup

setup(packages=find_namespace_packages(include=["speechrecipe*"]) + ["speechrecipe.conf"])
