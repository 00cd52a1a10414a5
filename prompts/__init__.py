"""Versioned LLM instruction templates."""
