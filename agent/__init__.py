"""Agent layer: CLI and (later) the LangGraph state machine."""
