"""lc0distill: train and distil chess networks in the Leela Chess Zero style."""

__version__ = "0.1.0"
