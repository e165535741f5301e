"""The pure core: the item graph, fingerprints, item lifecycle and the plan.

No I/O here: it imports neither ``requests`` nor ``sqlite3``.
"""
