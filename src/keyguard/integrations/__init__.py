"""Thin adapters to third-party libraries; each imports its SDK lazily."""
