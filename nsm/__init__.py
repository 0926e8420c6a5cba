"""NSM: the Neural Symbolic Model — hierarchical R-GCN with WHY/WHAT cycles — and its trainer."""

__version__ = "0.1.0"
