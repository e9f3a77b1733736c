"""The package version, in a module of its own so any part can say it without importing
the package root (which names the Python API)."""

__version__ = "0.1.0"
