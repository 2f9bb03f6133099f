"""l7lb data plane: everything on the request path, one folder per concern.

docs/architecture.md maps the folders and their layers (checked by the
import-linter contracts in pyproject.toml).
"""

__version__ = "0.1.0"
