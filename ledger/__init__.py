"""Annotation ledger: an append-only, hash-chained audit log for instance segmentation."""

__version__ = "0.1.0"
