"""One module per command; each offers ``register(subparsers, common)``."""
