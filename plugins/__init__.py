"""compressbench's built-in methods, one module per family.

Each module is a plugin registered through the ``compressbench`` entry-point group, exactly as a
third-party plugin is; this folder is installed as the ``compressbench_plugins`` package.
"""
