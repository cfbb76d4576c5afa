# Only carries cffi_modules (not expressible in pyproject.toml); all else is there.
from setuptools import setup

setup(cffi_modules=["aemu/cpu/_build.py:ffibuilder"])
