"""Scoring models: metrics, evaluation on a test split or a labelled folder, and figures."""
