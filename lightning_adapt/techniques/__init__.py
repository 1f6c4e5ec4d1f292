"""Adaptation techniques: what a technique adds to a LitGPT model, how it trains, merges and exports (LoRA)."""
