"""Chat sessions: a person steering the chat graph, saved and resumable, shared by `rapo chat` and the web UI."""
