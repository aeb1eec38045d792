"""Presentation: text summaries and tables, figures, and fit files."""
