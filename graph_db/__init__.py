"""The relation graph: phrase extraction, building, stores and importers."""
