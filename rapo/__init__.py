"""rapo: retrieval-augmented, critic-driven prompt optimisation for text-to-video models (RAPO++).

One installed import name over the repository's folders: `rapo.prompts` (LLM templates), `rapo.graph_db` (the
relation graph), `rapo.tools` (Stage 1, the reviser, LLM backends, video generation, critics), `rapo.finetune`
(Stage 3), `rapo.agent` (the SSPO graph, runs, chat, web UI and CLI) and `rapo.common` (errors and output).
Importing `rapo` loads nothing else.
"""
