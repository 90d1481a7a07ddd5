"""gRPC servicers: thin layers that decode a request, call the in-process store,
map errors (errors.py) and encode the answer. Each module has register()."""
