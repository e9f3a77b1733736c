"""genbatch: run large manifests through asynchronous image-to-video generation APIs."""

__version__ = "0.1.0"
