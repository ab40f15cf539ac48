"""The composition root: the ``hailong`` command, the demo and the local servers for tests. Imported by nothing."""
