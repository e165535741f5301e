"""The HiFly API V2 client: transport, pooled session, transfers and the typed calls.

It knows nothing of manifests or runs; every error it raises is a
:class:`hifly_batch.api.errors.ClientError`.
"""
