"""Strawberry types and the Schema."""
