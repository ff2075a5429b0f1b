"""Shroud GhostWire compatibility shim (see docs/migrating-from-shroud.md)."""
