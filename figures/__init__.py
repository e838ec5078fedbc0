"""Rate curves and learning-rate plots (issue: figures)."""
