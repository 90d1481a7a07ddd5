"""HTTP routes of the Docker Engine API, one module per object (thin: parse, call, render)."""
