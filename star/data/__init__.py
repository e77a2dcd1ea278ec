"""Marketplace data: the input format, its validation, and the synthetic marketplace on real taxonomies."""
