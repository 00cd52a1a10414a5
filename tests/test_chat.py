"""Chat sessions: the person's turns through the graph's interrupts, undo by time travel, persistence and resume.

The real SmolLM2-135M does Stage 1 and the revisions (kept to a few calls: one modifier merged, one sample per
revision), the tiny Wan pipeline makes the videos, and both stores are real SQLite files.
"""

import re
import subprocess

import pytest

from rapo.agent.chat.session import ChatSettings, ChatStore
from rapo.agent.loop.context import Context, SSPOConfig
from rapo.agent.loop.state import Turn
from rapo.agent.runs.run_spec import RunSpec, build_context
from rapo.common import RapoError
from rapo.graph_db.backends import open_store
from rapo.tools.retrieval import GraphLookup
from rapo.tools.stage1 import Stage1, Stage1Settings
from tests.test_cli import RAPO

PROMPT = "a dog running on the beach"


def chat_context(graph, embedder, llm, home) -> Context:
    """The session's context from the composition root, with a Stage 1 on the test's LLM and a low threshold."""
    stage1 = Stage1(
        GraphLookup(open_store(graph), embedder), llm, Stage1Settings(threshold=0.2, max_modifiers=1, attempts=1)
    )
    spec = RunSpec(generator="tiny-wan", critics=["temporal", "imaging"], config=SSPOConfig(candidates=2), run_dir=home)
    return build_context(spec, stage1=stage1)


@pytest.mark.slow
def test_a_session_through_its_interrupts_is_persisted_and_resumes(tmp_path, graph, embedder, llm):
    home = tmp_path / "chat"
    ctx = chat_context(graph, embedder, llm, home)
    settings = ChatSettings(graph=str(graph), generator="tiny-wan", critics=["temporal", "imaging"])
    chat = ChatStore(home).create(PROMPT, settings, ctx)

    # 1. Stage 1's candidates and the retrieved modifiers with their scores, waiting for the person
    view = chat.view()
    assert view.status == "open" and view.candidates and len(view.steps) == 1
    modifiers = {m.text: m for m in view.modifiers}
    assert modifiers["running along the shoreline"].merged and modifiers["running along the shoreline"].score > 0.5
    assert not view.candidates[0].video and view.can_generate

    # 2. Generate and score: every candidate gets its video and both critics' scores
    view = chat.send(Turn(action="generate"))
    for c in view.candidates:
        assert (home / c.video).is_file() and set(c.scores) == {"temporal", "imaging"}
    assert not view.can_generate
    with pytest.raises(RapoError, match="have their videos"):
        chat.send(Turn(action="generate"))

    # 3. Ban the merged modifier, then pin another: Stage 1 runs again with them
    view = chat.send(Turn(action="ban", text="running along the shoreline"))
    banned = {m.text: m for m in view.modifiers}["running along the shoreline"]
    assert banned.banned and not banned.merged and view.iteration == 1
    view = chat.send(Turn(action="pin", text="gentle sea breeze"))
    pinned = {m.text: m for m in view.modifiers}["gentle sea breeze"]
    assert pinned.pinned and pinned.merged and view.iteration == 2
    with pytest.raises(RapoError, match="not a retrieved modifier"):
        chat.send(Turn(action="pin", text="a purple elephant"))

    # 4. Ask for a change in words: the reviser gets the instruction; then edit by hand
    view = chat.send(Turn(action="change", text="shorter"))
    revision = chat.store.graph.get_state(chat.config).values["tool_calls"][-1]
    assert revision.tool == "revise_prompt" and revision.args["instructions"] == "shorter"
    assert view.iteration == 3 and (view.note is None) == (
        [c.text for c in view.candidates] != view.steps[-2].candidates
    )
    view = chat.send(Turn(action="edit", candidate=0, text="a dog running on the beach at dawn"))
    assert [c.text for c in view.candidates] == ["a dog running on the beach at dawn"]
    with pytest.raises(RapoError, match="no candidate 1"):
        chat.send(Turn(action="accept", candidate=1))

    # 5. Reopen from disk mid-session: the same view, and it goes on from there
    reopened = ChatStore(home).open(chat.info.id, ctx)
    assert reopened.view() == view
    actions = ["generate", "ban", "pin", "change", "edit"]
    assert [t.action for t in view.turns] == actions and len(view.steps) == 6

    # 6. Undo to the step after the ban (time travel): later turns leave the branch; accept there
    view = reopened.undo(2)
    assert [t.action for t in view.turns] == ["generate", "ban"] and len(view.steps) == 3
    assert not {m.text: m for m in view.modifiers}["gentle sea breeze"].pinned
    chosen = view.candidates[-1].text
    view = reopened.send(Turn(action="accept", candidate=len(view.candidates) - 1))
    assert view.status == "accepted" and view.accepted == chosen
    with pytest.raises(RapoError, match="is finished"):
        reopened.send(Turn(action="change", text="longer"))

    # 7. What was persisted: the session row, the turns of the branch, and every checkpoint of both branches
    store = ChatStore(home)
    [info] = store.list()
    assert (info.id, info.status, info.accepted, info.input) == (chat.info.id, "accepted", chosen, PROMPT)
    assert info.settings == settings
    final = store.open(info.id, ctx).view()
    assert [t.action for t in final.turns] == ["generate", "ban", "accept"]
    config = {"configurable": {"thread_id": info.id}}
    states = [s.values for s in store.graph.get_state_history(config)]
    assert any(len(v.get("turns", [])) == 5 for v in states), "the undone branch is still in the history"


@pytest.mark.slow
def test_the_terminal_chat_resumes_a_session_by_id(tmp_path, graph):
    home = tmp_path / "chat"
    base = [*RAPO, "chat", "--home", str(home)]

    # 1. Start, edit by hand, quit: the session is kept
    first = subprocess.run(
        [*base, PROMPT, "--graph", str(graph)], input="e 0 a dog running on the beach at dawn\nq\n",
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert first.returncode == 0, first.stderr
    session = re.search(r"rapo chat --session ([0-9a-f]{8})", first.stderr).group(1)
    assert "retrieved modifiers" in first.stdout and "a dog running on the beach at dawn" in first.stdout

    # 2. Resume by id: it shows where it stopped; accept
    second = subprocess.run([*base, "--session", session], input="h\na\n", capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr
    assert "1: round 1, after edit: a dog running on the beach at dawn" in second.stdout
    assert "accepted: a dog running on the beach at dawn" in second.stdout

    # 3. The list shows it accepted; an unknown id is one line and exit 2
    listed = subprocess.run([*base, "--list"], capture_output=True, text=True, timeout=600)
    assert session in listed.stdout and "accepted" in listed.stdout
    unknown = subprocess.run([*base, "--session", "00000000"], capture_output=True, text=True, timeout=600)
    assert unknown.returncode == 2 and unknown.stderr.strip().startswith("error: no chat session '00000000'")


def test_stage1_merges_pinned_and_never_banned_modifiers(graph, embedder):
    from tests.test_sspo import ANSWERS
    from tests.test_stage1 import ScriptedLLM

    stage1 = Stage1(GraphLookup(open_store(graph), embedder), ScriptedLLM(ANSWERS), Stage1Settings(threshold=0.2))
    assert stage1.run(PROMPT).merged[0] == "running along the shoreline"
    result = stage1.run(PROMPT, pin=["gentle sea breeze"], ban=["running along the shoreline"])
    assert result.merged[0] == "gentle sea breeze" and "running along the shoreline" not in result.merged
    assert "running along the shoreline" in [m.text for m in result.modifiers]  # still offered, to unban by undo
    with pytest.raises(ValueError, match="not among the retrieved modifiers"):
        stage1.run(PROMPT, pin=["a purple elephant"])
