"""A small OpenAI-compatible backend for the demo, the tests and the benchmarks."""
