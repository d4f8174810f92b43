"""DSPy's optimizers as methods: MIPROv2 (mipro.py) and GEPA (gepa.py) on one skeleton
(common.py: the program, the budget plan, resume, trying the programs DSPy found)."""
