"""Critics on synthetic videos with known properties, and the VLM judge against a local fake endpoint."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np
import pytest

from rapo.common import ModelError, ServiceError
from rapo.tools.critics.flow import FlowCritic, direction
from rapo.tools.critics.imaging import ImagingCritic
from rapo.tools.critics.physics import PhysicsCritic, physical_law
from rapo.tools.critics.questions import derive_questions
from rapo.tools.critics.registry import CRITIC_NAMES, make_critic
from rapo.tools.critics.temporal import TemporalCritic
from rapo.tools.critics.vlm_judge import VlmJudge, parse_reply
from rapo.tools.video import Video


def texture(height: int, width: int, cell: int = 4, seed: int = 0) -> np.ndarray:
    """A random RGB texture with features about `cell` pixels wide (smooth enough for optical flow)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (height // cell + 1, width // cell + 1, 3), dtype=np.uint8)
    big = cv2.resize(small, ((width // cell + 1) * cell, (height // cell + 1) * cell), interpolation=cv2.INTER_CUBIC)
    return np.ascontiguousarray(big[:height, :width])


def translating(height: int, width: int, frames: int, dx: float, dy: float = 0.0) -> np.ndarray:
    """(F, H, W, 3) crops of one large texture, the content moving by (dx, dy) px a frame."""
    margin = int(max(abs(dx), abs(dy)) * frames) + 8
    base = texture(height + 2 * margin, width + 2 * margin)
    out = []
    for t in range(frames):
        shift = np.float32([[1, 0, dx * t], [0, 1, dy * t]])  # content moves by +(dx, dy)
        moved = cv2.warpAffine(base, shift, (base.shape[1], base.shape[0]), flags=cv2.INTER_CUBIC)
        out.append(moved[margin : margin + height, margin : margin + width])
    return np.stack(out)  # (F, H, W, 3)


def still(frame: np.ndarray, frames: int = 12) -> np.ndarray:
    return np.repeat(frame[None], frames, axis=0)  # (F, H, W, 3)


# -- flow ------------------------------------------------------------------------------------------------------


def test_translating_texture_has_expected_flow_and_is_dynamic():
    video = Video(translating(96, 128, 17, dx=-2.0, dy=-1.0), fps=8.0)  # VBench threshold 6 * 96 / 256 = 2.25 px
    result = FlowCritic(max_side=None).score(video, "")
    assert result.critic == "flow"
    assert result.raw["mean_flow_px"] == pytest.approx(np.hypot(2.0, 1.0), rel=0.10)
    assert result.raw["threshold_px"] == pytest.approx(2.25)
    assert result.raw["dynamic"] == 1.0 and result.raw["dynamic_degree"] == 1.0
    assert result.raw["smoothness"] > 0.9
    assert 0.9 < result.score <= 1.0
    assert "whole frame moves up-left at 2.2 px/frame" in result.raw["summary"]
    assert "steady" in result.raw["summary"]
    assert result.raw["summary"] in result.feedback


def test_downscaled_flow_is_in_original_pixels():
    frames = translating(96, 192, 9, dx=4.0)
    result = FlowCritic(max_side=96).score(Video(frames, fps=8.0), "")
    assert result.raw["flow_size"] == "96x48"
    assert result.raw["mean_flow_px"] == pytest.approx(4.0, rel=0.10)
    assert "moves right" in result.raw["summary"]


def test_static_video_is_not_dynamic():
    result = FlowCritic().score(Video(still(texture(96, 128)), fps=8.0), "")
    assert result.raw["dynamic"] == 0.0 and result.raw["dynamic_degree"] == 0.0
    assert result.raw["smoothness"] > 0.99
    assert "nearly static" in result.raw["summary"]
    assert result.feedback.startswith("Nearly static")
    assert result.score == pytest.approx(0.5, abs=0.01)


def test_jittery_motion_is_less_smooth():
    rng = np.random.default_rng(1)
    offsets = np.cumsum(rng.choice([-3.0, 3.0], size=12))
    base = texture(160, 200)
    frames = np.stack([base[16:112, 32 + int(o) : 160 + int(o)] for o in offsets])  # (F, 96, 128, 3)
    jitter = FlowCritic().score(Video(frames, fps=8.0), "")
    steady = FlowCritic().score(Video(translating(96, 128, 12, dx=3.0), fps=8.0), "")
    assert jitter.raw["smoothness"] < 0.6 < steady.raw["smoothness"]


def test_flow_checks_inputs():
    with pytest.raises(ValueError, match="`video`"):
        FlowCritic().score(Video(still(texture(32, 32), 1), fps=8.0), "")
    with pytest.raises(ValueError, match="`max_side`"):
        FlowCritic(max_side=4)
    assert direction(1, 0) == "right" and direction(0, -1) == "up" and direction(-1, 1) == "down-left"


def test_vbench_subsamples_high_fps():
    result = FlowCritic().score(Video(translating(64, 64, 17, dx=1.0), fps=16.0), "")
    assert result.raw["frame_interval"] == 2.0  # 16 fps -> every second frame, about 8 fps
    assert len(result.raw["top5_px"]) == 8
    assert "1.0 px/frame" in result.raw["summary"]  # per video frame, not per sampled step


# -- physics ----------------------------------------------------------------------------------------------------

GRAVITY = {"physical_laws": "Due to gravity, the water falls from the rock into the pool."}


def test_physics_rules_check_the_direction_gravity_implies():
    down = PhysicsCritic().score(Video(translating(96, 128, 13, dx=0.0, dy=3.0), fps=8.0), "a waterfall", GRAVITY)
    up = PhysicsCritic().score(Video(translating(96, 128, 13, dx=0.0, dy=-3.0), fps=8.0), "a waterfall", GRAVITY)
    assert down.raw["judge"] == up.raw["judge"] == "rules: downward"
    assert down.raw["law"] == GRAVITY["physical_laws"] and down.raw["downward_share"] > 0.9
    assert down.score > 0.9 > 0.1 > up.score
    assert down.feedback.startswith("The motion fits the law (motion mostly downward)")
    assert "show it moving downward" in up.feedback and GRAVITY["physical_laws"] in up.feedback


def test_physics_rules_want_stillness_for_equilibrium_and_continuity_without_a_law():
    law = {"phys_law": "Due to gravity balanced by tension, the banner reaches static equilibrium."}
    hanging = PhysicsCritic().score(Video(still(texture(96, 128)), fps=8.0), "a banner", law)
    swinging = PhysicsCritic().score(Video(translating(96, 128, 13, dx=4.0), fps=8.0), "a banner", law)
    assert hanging.raw["judge"] == "rules: still"  # the balance, not the gravity it balances
    assert hanging.score > 0.9 > 0.1 > swinging.score
    plain = PhysicsCritic().score(Video(translating(96, 128, 13, dx=2.0), fps=8.0), "a car", {"dimension": ["x"]})
    assert plain.raw["judge"] == "rules: continuity" and plain.raw["law"] == ""
    assert plain.feedback.startswith("Judged on continuity only (no physical law was given)")
    assert plain.score == pytest.approx(plain.raw["smoothness"])


class ScriptedJudge:
    model_id = "scripted-judge"

    def __init__(self, reply: str):
        self.reply, self.messages = reply, []

    def generate(self, messages, seed, decoding):
        from rapo.tools.llm import Generation

        self.messages.append(messages)
        return Generation(text=self.reply, new_tokens=10, seconds=0.0)


def test_physics_judge_gets_the_law_and_the_flow_and_its_score_is_read():
    judge = ScriptedJudge("Score: 2\nFeedback: Ask for the water to fall from the rock into the pool.")
    video = Video(translating(96, 128, 13, dx=0.0, dy=-3.0), fps=8.0)
    result = PhysicsCritic(judge=judge).score(video, "a waterfall", GRAVITY)
    asked = judge.messages[0][-1]["content"]
    assert "Prompt: a waterfall" in asked and GRAVITY["physical_laws"] in asked
    assert "whole frame moves up" in asked and "downward_share 0.0" in asked
    assert result.score == pytest.approx(0.25) and result.raw["judge"] == "scripted-judge"
    assert result.feedback == "Ask for the water to fall from the rock into the pool."
    with pytest.raises(ServiceError, match="no 'Score: N'"):
        PhysicsCritic(judge=ScriptedJudge("The video looks fine.")).score(video, "a waterfall", GRAVITY)
    # Without a law there is nothing to ask the judge: the rules score continuity
    assert PhysicsCritic(judge=judge).score(video, "a waterfall").raw["judge"] == "rules: continuity"
    assert physical_law({"physical_laws": ["gravity pulls", "down"]}) == "gravity pulls down"


# -- temporal and imaging ----------------------------------------------------------------------------------------


def test_flicker_lowers_the_flicker_score():
    frames = still(texture(64, 96))
    flickering = frames.astype(np.int16)
    flickering[1::2] += 40  # every other frame brighter
    steady = TemporalCritic().score(Video(frames, fps=8.0), "")
    flicker = TemporalCritic().score(Video(np.clip(flickering, 0, 255).astype(np.uint8), fps=8.0), "")
    assert steady.raw["flicker"] == pytest.approx(1.0) and steady.score == pytest.approx(1.0)
    assert flicker.raw["flicker"] < 0.9 < steady.raw["flicker"]
    assert flicker.score < steady.score
    assert "brightness flickers" in flicker.feedback and steady.feedback.startswith("Temporally stable")


def test_blur_lowers_sharpness():
    sharp = still(texture(96, 128), 4)
    blurred = np.stack([cv2.GaussianBlur(f, (0, 0), 3.0) for f in sharp])
    a = ImagingCritic().score(Video(sharp, fps=8.0), "")
    b = ImagingCritic().score(Video(blurred, fps=8.0), "")
    assert b.raw["sharpness_score"] < 0.5 < a.raw["sharpness_score"]
    assert b.score < a.score
    assert "blurry" in b.feedback


@pytest.mark.parametrize(("value", "word"), [(0, "underexposed"), (255, "overexposed")])
def test_black_or_saturated_video_is_flagged_for_exposure(value: int, word: str):
    frames = np.full((6, 48, 64, 3), value, dtype=np.uint8)
    result = ImagingCritic().score(Video(frames, fps=8.0), "")
    assert result.raw["exposure_score"] == 0.0 and result.raw["clipped_share"] == 1.0
    assert "exposure" in result.feedback and word in result.feedback
    dark = ImagingCritic().score(Video(still(texture(64, 64), 4) // 6, fps=8.0), "")  # dim but detailed
    assert "underexposed" in dark.feedback


def test_noise_is_named():
    rng = np.random.default_rng(2)
    clean = still(cv2.GaussianBlur(texture(96, 128), (0, 0), 1.0), 4).astype(np.float64)
    noisy = np.clip(clean + rng.normal(0, 12, clean.shape), 0, 255).astype(np.uint8)
    result = ImagingCritic().score(Video(noisy, fps=8.0), "")
    assert result.raw["noise_score"] < 0.5 and "noise" in result.feedback


# -- CLIP ---------------------------------------------------------------------------------------------------------


def test_clip_critic_on_tiny_random_clip(tmp_path):
    from rapo.tools.critics.clip import ClipCritic, tiny_clip

    critic = ClipCritic(tiny_clip(tmp_path / "tiny-clip"), num_frames=4)
    result = critic.score(Video(translating(40, 56, 6, dx=1.0), fps=8.0), "a red cat running on the grass")
    # CLIPScore's mapping of the mean frame cosine, recomputed from the recorded per-frame cosines
    from rapo.tools.critics.clip import CLIPSCORE_WEIGHT

    mean = float(np.mean(result.raw["cosine_per_frame"]))
    assert result.score == pytest.approx(min(1.0, CLIPSCORE_WEIGHT * max(mean, 0.0)), abs=1e-3)
    assert result.raw["real_model"].startswith("no: not a real model")
    assert "not a real model" in result.feedback
    assert len(result.raw["cosine_per_frame"]) == 4
    with pytest.raises(ValueError, match="`prompt`"):
        critic.score(Video(still(texture(32, 32), 2), fps=8.0), "  ")
    with pytest.raises(ModelError, match="CLIP model not found"):
        ClipCritic(tmp_path / "missing")


# -- VLM judge ----------------------------------------------------------------------------------------------------


class FakeChat(BaseHTTPRequestHandler):
    """Answers POST /v1/chat/completions in the OpenAI format with `server.reply`; records request bodies."""

    def do_POST(self):  # noqa: N802 - http.server's naming
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append(body)
        answer = {
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "created": 0,
            "model": body["model"],
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": self.server.reply}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture()
def fake_vlm(monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeChat)
    server.requests, server.reply = [], ""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


PROMPT = "two red cars parked next to a tall building"


def judge(server) -> VlmJudge:
    return VlmJudge(f"http://127.0.0.1:{server.server_address[1]}/v1", "fake-vlm", num_frames=3, max_retries=0)


def test_vlm_judge_well_formed_reply(fake_vlm):
    questions = derive_questions(PROMPT)
    answers = [{"id": i, "score": 5, "issue": ""} for i in range(1, len(questions) + 1)]
    answers[0] = {"id": 1, "score": 1, "issue": "only one car"}
    fake_vlm.reply = json.dumps({"answers": answers, "misalignment": "There is one car, not two."})
    result = judge(fake_vlm).score(Video(translating(48, 64, 8, dx=1.0), fps=8.0), PROMPT)
    assert result.score == pytest.approx((np.mean([1] + [5] * (len(questions) - 1)) - 1) / 4)
    assert result.raw["parsed"] == len(questions) and result.raw["unparsed"] == ""
    assert result.raw["misalignment"] == "There is one car, not two."
    assert result.raw["template"] == "vlm_judge@1"
    assert "Are there exactly two cars?" in result.feedback and "only one car" in result.feedback
    request = fake_vlm.requests[0]
    assert request["model"] == "fake-vlm"
    parts = request["messages"][-1]["content"]
    images = [p for p in parts if p["type"] == "image_url"]
    assert len(images) == 3 and images[0]["image_url"]["url"].startswith("data:image/jpeg;base64,")
    assert "1. Are there exactly two cars?" in parts[0]["text"]


def test_vlm_judge_json_in_code_fence_with_chatter(fake_vlm):
    fake_vlm.reply = (
        "Sure! Here is my assessment of the frames.\n```json\n"
        '{"answers": [{"id": 1, "score": "four"}, {"id": 2, "score": "3/5"}, {"id": 3, "score": 4.0}],\n'
        ' "misalignment": "The building is short."}\n```\nLet me know if you need anything else {really}.'
    )
    result = judge(fake_vlm).score(Video(still(texture(48, 64), 5), fps=8.0), PROMPT)
    assert result.raw["question_scores"][:3] == [4.0, 3.0, 4.0]
    assert result.raw["parsed"] == 3.0
    assert result.raw["unparsed"] == ", ".join(str(i) for i in range(4, len(derive_questions(PROMPT)) + 1))
    assert result.score == pytest.approx((11 / 3 - 1) / 4)
    assert "no score read for question(s) 4" in result.feedback
    assert result.raw["misalignment"] == "The building is short."


def test_vlm_judge_malformed_reply_is_a_clear_error_not_an_invented_score(fake_vlm):
    for reply in ("<<<%%% garbage {not json] ]]", ""):
        fake_vlm.reply = reply
        with pytest.raises(ServiceError, match="gave no readable score"):
            judge(fake_vlm).score(Video(still(texture(48, 64), 5), fps=8.0), PROMPT)


def test_vlm_judge_unreachable_endpoint_is_one_clear_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # free once closed: nothing listens there
    judge_down = VlmJudge(f"http://127.0.0.1:{port}/v1", "fake-vlm", max_retries=0, timeout=5)
    with pytest.raises(ServiceError, match=rf"VLM judge cannot reach http://127.0.0.1:{port}/v1"):
        judge_down.score(Video(still(texture(32, 32), 2), fps=8.0), PROMPT)


def test_parse_reply_variants():
    numbered = parse_reply("1. Is there a cat? Score: 4\nQ2: 2/5 the dog is missing\n3) five\nmisalignment: no dog", 3)
    assert numbered.scores == {1: 4.0, 2: 2.0, 3: 5.0} and numbered.misalignment == "no dog"
    assert parse_reply('[4, "2", 9]', 3).scores == {1: 4.0, 2: 2.0}  # 9 is out of range: unparsed
    assert parse_reply('{"1": 3, "Q2": {"score": "five"}}', 2).scores == {1: 3.0, 2: 5.0}
    assert parse_reply("", 2).scores == {}


def test_questions_cover_counts_attributes_relations():
    questions = derive_questions("three yellow balloons floating above a wooden table in a kitchen")
    assert "Are there exactly three balloons?" in questions
    assert "Are the balloons yellow?" in questions
    assert "Are the balloons above a wooden table?" in questions
    assert "Does the scene take place in a kitchen?" in questions
    assert questions[-1].startswith("Overall, does the video show:")
    assert "Is the cat to the left of a dog?" in derive_questions("a cat sitting on the left of a dog")
    assert len(derive_questions("a b c " * 50, max_questions=3)) <= 3


def test_vlm_judge_checks_inputs():
    with pytest.raises(ValueError, match="`base_url`"):
        VlmJudge("localhost:8000", "m")
    with pytest.raises(ValueError, match="`num_frames`"):
        VlmJudge("http://127.0.0.1:1/v1", "m", num_frames=0)


# -- registry -----------------------------------------------------------------------------------------------------


def test_registry():
    assert CRITIC_NAMES == ("flow", "temporal", "imaging", "clip", "vlm", "physics")
    assert make_critic("flow", max_side=128).max_side == 128
    assert make_critic("physics").judge is None  # rules; a served judge connects on first use
    assert (
        make_critic("physics", judge="openai:http://127.0.0.1:9/v1#m")._judge_spec == "openai:http://127.0.0.1:9/v1#m"
    )
    assert make_critic("temporal").name == "temporal"
    with pytest.raises(ValueError, match="unknown critic 'optical': choose from flow, temporal, imaging, clip, vlm, p"):
        make_critic("optical")
    with pytest.raises(ValueError, match="bad options"):
        make_critic("imaging", colour=True)


def test_vlm_compare_sends_both_videos_and_reads_the_winner(fake_vlm):
    fake_vlm.reply = "Winner: B\nReason: Video B shows two red cars by the building; A shows one."
    a, b = Video(still(texture(48, 64), 5), fps=8.0), Video(translating(48, 64, 8, dx=1.0), fps=8.0)
    assert judge(fake_vlm).compare(a, b, PROMPT) == ("B", "Video B shows two red cars by the building; A shows one.")
    parts = fake_vlm.requests[0]["messages"][-1]["content"]
    assert [p["text"] for p in parts if p["type"] == "text"] == [f"Prompt: {PROMPT}", "Video A:", "Video B:"]
    assert sum(p["type"] == "image_url" for p in parts) == 6  # 3 frames of each
    assert "Winner: A or B" in fake_vlm.requests[0]["messages"][0]["content"]
    fake_vlm.reply = "Both look similar to me."
    with pytest.raises(ServiceError, match="named no winner"):
        judge(fake_vlm).compare(a, b, PROMPT)
