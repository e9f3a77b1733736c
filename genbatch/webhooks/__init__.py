"""Webhooks in: the receiver (`genbatch webhooks`) that providers' callbacks reach.

The callback URLs themselves are built by the worker (`genbatch.worker.callbacks`), which
gives one to each submit; this package only serves them.
"""
