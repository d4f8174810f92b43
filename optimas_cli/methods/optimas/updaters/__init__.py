"""Optimizers of one component's variables against its local reward, one file per variable type."""
