"""l7lb data plane: everything on the request path."""

__version__ = "0.1.0"
