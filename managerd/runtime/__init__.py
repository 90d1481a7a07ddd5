"""Invoking OCI runtime binaries (dockyard-shim, runc) with runc's command line."""
