"""One module per command; each offers ``register(subparsers, common)``, where
``common(*names)`` gives the parents for ``-v``/``-q`` and the global options named."""
