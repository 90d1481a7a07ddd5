"""Content: the blob store on disk (store.py) and its namespaced view (local.py)."""
