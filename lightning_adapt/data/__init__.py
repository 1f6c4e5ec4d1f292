"""Data modules and the built-in demo data of lightning-adapt."""

IGNORE_INDEX = -100
"""The label of tokens that carry no loss (prompt, padding): PyTorch's `cross_entropy` default, LitGPT's too."""
