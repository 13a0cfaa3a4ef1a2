"""Adapters: the original's request protocol over a file (batch mode) and ZMQ (extra ``[zmq]``).

Nothing in the core imports this package.
"""
