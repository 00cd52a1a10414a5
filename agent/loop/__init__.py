"""The LangGraph SSPO loop: its state, nodes, routers, selection rules, controllers and the chat variant."""
