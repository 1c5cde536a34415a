"""Backends: render a packed LayerGraph into hardware projects."""
