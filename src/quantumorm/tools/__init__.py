"""Tools that operate on a store from outside an application: the command line
(``python -m quantumorm``). They use the library's public API and a connection of their own."""
