"""The per-task monitor: a small process that outlives managerd and supervises one task.

``_process.py`` is the monitor program itself (stdlib only, run with ``python -I -S``);
``client.py`` is managerd's side: spawning it and speaking its socket protocol.
"""
