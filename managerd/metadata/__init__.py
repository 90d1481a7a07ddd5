"""Namespaced metadata in SQLite: the schema (db.py) and one store per object kind."""
