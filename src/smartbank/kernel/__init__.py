"""The kernel: money, ids, clock, errors and invariants. Imports nothing from the project."""
