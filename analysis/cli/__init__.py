"""The analysis commands (``tingbao analyze``, ``exposure``, ``alerts``, ``verify``,
``report``); each module registers one and imports its work only when it runs."""
