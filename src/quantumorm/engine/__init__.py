"""The I/O-free core: operations written once as generators, and the two drivers that run them."""
