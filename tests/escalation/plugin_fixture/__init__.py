"""A tiny executor plugin package for ``test_executor_plugin.py``.

The tests register it under the ``hotpath.executors`` entry-point group with a ``*.dist-info``
written to a temporary directory, so it is loaded exactly as an installed plugin would be.
"""
