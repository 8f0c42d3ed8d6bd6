"""The application layer: what every front end asks for, implemented once.

Front ends never import this package: they import ``backend.api``, which re-exports what they
may use. Modules here use the services (engine, library, store, remote, tools, hardware) and
the base (errors, settings, paths); nothing below imports them back.
"""
