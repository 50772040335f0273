"""Example kojo applications."""
