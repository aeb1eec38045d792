"""Fitting: the optimiser and the linear mixed fit (from a frame to the optimised deviance)."""
