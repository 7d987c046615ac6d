"""edgeiqa: distil big image-quality teachers into small students under a compute budget."""

__version__ = "0.1.0"
