"""The version of fused_dropout, in one place: pyproject.toml reads it (setuptools dynamic version) and
fused_dropout.__version__ is this."""
__version__ = "0.1.0"
