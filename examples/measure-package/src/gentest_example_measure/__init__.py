"""An example gentest measure package."""
