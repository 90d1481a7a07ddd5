"""Tasks: running containers. ``local.py`` holds the logic, ``service.py`` the gRPC side."""
