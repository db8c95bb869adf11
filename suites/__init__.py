"""Built-in suite files (``*.toml``), found by name: ``gentest train quick``."""
