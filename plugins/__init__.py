"""gankit's built-in plugins: MLP and DCGAN models, the BCE losses and the datasets.

Imported as ``gankit_plugins``. They reach gankit only through the entry points in ``pyproject.toml``, exactly as a
third-party plugin would; the core never imports this package.
"""
