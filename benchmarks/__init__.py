"""Benchmarks and the ComfyUI model builders they share with the tests."""
