"""The `rapo` command line: one module per noun, each only wiring options to library functions."""
