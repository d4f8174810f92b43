"""`hydra/launcher=ray`: Hydra sweeps on a Ray cluster, local by default (README: Commands)."""
