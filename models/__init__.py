"""Runnable example models."""
