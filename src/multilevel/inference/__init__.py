"""Inference on a fitted linear mixed model: t and F tests with Satterthwaite or
Kenward-Roger df, Type III contrasts, profile, Wald and bootstrap intervals, the parametric
bootstrap and likelihood-ratio tests."""
