"""Image distribution: references, the registry client, pull, push, unpack,
save/load, import/export/commit.

Owns everything between a registry (or an archive) and managerd's content
store, snapshots and image records; knows nothing of Docker containers beyond
the name of the image they use.
"""
