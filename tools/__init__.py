"""Tools: LLM backend and the Stage 1 prompt tools, each usable without LangChain."""
