"""Triton kernels (device code only)."""
