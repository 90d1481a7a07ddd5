"""The per-task monitor: a small process that outlives managerd and supervises one task.

``_process.py`` is the monitor program itself (stdlib only, run with ``python -I -S``);
``_zygote.py`` forks monitors from one warm interpreter; ``client.py`` is managerd's
side: spawning them and speaking the monitor's socket protocol.
"""
