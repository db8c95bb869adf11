"""The built-in measure library, one module per family.

Measures register through the ``gentest.measures`` entry-point group exactly like third-party
plug-ins do.
"""
