"""The command line's parts: the argument parser, error reporting, and one module per command.

`assistant/__main__.py` (`python -m assistant`, the `doc-assistant` script) parses and dispatches;
each command module imports what its command needs when it runs, so `search` stays small and fast.
"""
