"""Agent layer: the `rapo` command line, the LangGraph SSPO loop and chat graph, runs and their stores, the web UI."""
