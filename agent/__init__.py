"""Agent layer, by job: `loop`, `runs`, `chat`, `web` and `cli`, each importing only the ones before it.

`loop` is the LangGraph SSPO graph, `runs` the runners and their stores, `chat` the sessions a person steers, `web`
the UI and `cli` the `rapo` command.
"""
