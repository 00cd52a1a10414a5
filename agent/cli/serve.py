"""`rapo serve`: keep Stage 1's models loaded, so that `rapo refine` answers in the time of its LLM calls."""

from __future__ import annotations

from typing import Annotated

import typer

from rapo.agent.cli.options import AdapterOpt, DiscriminatorOpt, GraphOpt, LlmOpt


def serve_cmd(
    graph: GraphOpt = None,
    llm: LlmOpt = None,
    adapter: AdapterOpt = None,
    discriminator: DiscriminatorOpt = None,
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1; 0 picks a free one.", min=0, max=65535)] = 0,
) -> None:
    """Serve Stage 1 on 127.0.0.1 with its models loaded; `rapo refine` with the same models uses it while it runs.

    Examples:
      rapo serve &
      rapo refine "a dog running on the beach"       # answered by the server: no model load
    """
    from rapo.agent.runs.refine import open_graph, stage1_identity, stage1_pipeline
    from rapo.agent.settings import Settings
    from rapo.agent.web.refine_server import serve

    settings = Settings()
    location = open_graph(graph, settings)
    pipeline = stage1_pipeline(location, llm or settings.llm, settings.llm_dtype, None, adapter, discriminator)
    serve(pipeline, stage1_identity(location[0], llm or settings.llm, adapter, discriminator, settings.llm_dtype), port)
