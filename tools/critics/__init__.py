"""Critics score a generated video against its prompt; each returns a score in [0, 1] with feedback."""
