"""The pipeline stages: collect, fit, update, evaluate, and the loop that runs them."""
