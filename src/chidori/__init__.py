"""Chidori: a control plane for Spark and AI/ML jobs."""

__version__ = "0.1.0"
