"""Seed systems: each folder holds a data loader and a metric; graphs live in configs/system/."""
