"""The Chomik kit: shared runtime and the `chomik` command line. No business rules."""
