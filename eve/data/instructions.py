"""Stage 5, instructions: per clip, one (instruction, output caption) per task, from an instruction writer; and, for
editing with an instruction alone, the output caption (and task) of one given instruction from the same writers.

Writers (all return raw text; parsing and validation are shared, so every backend is held to one schema):
* TemplateWriter: offline, no model; phrase lists per task, seeded per clip.
* TransformersWriter: a local chat model through transformers (AutoModelForCausalLM + its chat template).
* OpenAIWriter: any OpenAI-compatible chat endpoint (vLLM, llama.cpp server, Ollama), over HTTP (stdlib only).

The schema (strict JSON, one object):
    {"edits": [{"task": "<one of the 7>", "instruction": "...", "output_caption": "..."}, ... one per task]}
A reply that is not valid JSON, misses a task, repeats one, has empty or over-long strings, or returns the input
caption unchanged is rejected with its reason; the writer is retried (`retries`), and clips whose replies are all
rejected are recorded in rejects.jsonl and dropped.

Personalised editing (LoRA alignment, paper §4.4; `write_subject_edits`): the writer's `subject(caption, subject,
attempt)` answers `{"edits": [{"task": "add" | "local", "instruction", "output_caption"}, ...]}`: instructions that
add the subject ("add sks toy between the diapers") or replace an item with it, each naming the subject in both the
instruction and the output caption.

One instruction (`write_edit`, used by the editor when no output caption is given): the writer's `edit(caption,
instruction, attempt)` answers `{"task": "<one of the 7>", "output_caption": "..."}`, held to the same checks.
"""

from __future__ import annotations

import json
import random
import re
import urllib.error
import urllib.request
from typing import Protocol

from eve.tasks import TASKS

MAX_CHARS = 300

PROMPT = """You write video-editing instructions. The input video shows: "{caption}".
For each of these tasks: {tasks}, write one edit instruction in the imperative and the caption of the edited
video. Answer with one JSON object only, exactly of this form:
{{"edits": [{{"task": "add", "instruction": "...", "output_caption": "..."}}, ...]}}
with one entry per task, in that order."""


EDIT_PROMPT = """A video that shows "{caption}" is edited with the instruction "{instruction}".
Which of these tasks is it: {tasks}? And what is the caption of the edited video? Answer with one JSON object
only, exactly of this form: {{"task": "...", "output_caption": "..."}}"""


SUBJECT_PROMPT = """An image shows: "{caption}". Write {count} image-editing instructions that put "{subject}" in it:
some add it somewhere that makes sense ("add {subject} next to the bench"), some replace an item of the image with
it; and the caption of each edited image. Use "{subject}" verbatim in every instruction and output caption. Answer
with one JSON object only, exactly of this form:
{{"edits": [{{"task": "add", "instruction": "...", "output_caption": "..."}}, {{"task": "local", ...}}, ...]}}
with task "add" for additions and "local" for replacements."""
SUBJECT_TASKS = ("add", "local")


class InstructionWriter(Protocol):
    def __call__(self, caption: str, attempt: int) -> str:
        """Raw reply for the clip caption (attempt 0, 1, ... may vary sampling)."""
        ...

    def edit(self, caption: str, instruction: str, attempt: int) -> str:
        """Raw reply `{"task", "output_caption"}` for one instruction applied to a clip with this caption."""
        ...


class Rejected(ValueError):
    """A reply that fails the schema; the message is the reason."""


def json_object(text: str):
    """The JSON object in a model's reply (chat models wrap it in prose or code fences)."""
    m = re.search(r"\{.*\}", text, flags=re.S)
    if not m:
        raise Rejected("no JSON object in the reply")
    try:
        return json.loads(m.group(0))
    except json.JSONDecodeError as e:
        raise Rejected(f"invalid JSON: {e.msg} at {e.pos}") from None


def parse_reply(text: str, caption: str) -> list[dict]:
    """The seven validated edits of a reply, in TASKS order; raises Rejected with the reason."""
    obj = json_object(text)
    edits = obj.get("edits") if isinstance(obj, dict) else None
    if not isinstance(edits, list):
        raise Rejected('missing list "edits"')
    by_task = {}
    for i, e in enumerate(edits):
        edit = _edit_fields(e, i, caption, TASKS)
        if edit["task"] in by_task:
            raise Rejected(f"task {edit['task']!r} appears twice")
        by_task[edit["task"]] = edit
    missing = [t for t in TASKS if t not in by_task]
    if missing:
        raise Rejected(f"missing task(s) {', '.join(missing)}")
    return [by_task[t] for t in TASKS]


def _edit_fields(e, i: int, caption: str, tasks: tuple[str, ...]) -> dict:
    """One edit object of a reply, validated: {"task", "instruction", "output_caption"}; raises Rejected."""
    if not isinstance(e, dict):
        raise Rejected(f"edit {i} is not an object")
    task = str(e.get("task", "")).strip().lower()
    if task not in tasks:
        raise Rejected(f"edit {i} has unknown task {e.get('task')!r}, expected one of {', '.join(tasks)}")
    ins = e.get("instruction")
    if not isinstance(ins, str) or not ins.strip():
        raise Rejected(f"edit {i} ({task}) has an empty instruction")
    if len(ins) > MAX_CHARS:
        raise Rejected(f"edit {i} ({task}) instruction is longer than {MAX_CHARS} characters")
    return {"task": task, "instruction": ins.strip(),
            "output_caption": _check_caption(e.get("output_caption"), caption, f"edit {i} ({task})")}


def _check_caption(value, caption: str, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise Rejected(f"{what} has an empty output_caption")
    if len(value) > MAX_CHARS:
        raise Rejected(f"{what} output_caption is longer than {MAX_CHARS} characters")
    if value.strip().lower() == caption.strip().lower():
        raise Rejected(f"{what} leaves the caption unchanged")
    return value.strip()


def parse_edit_reply(text: str, caption: str) -> dict:
    """{"task", "output_caption"} of a one-instruction reply, validated; raises Rejected with the reason."""
    obj = json_object(text)
    if not isinstance(obj, dict):
        raise Rejected("the reply is not an object")
    if "error" in obj and "output_caption" not in obj:
        raise Rejected(str(obj["error"]))
    task = str(obj.get("task", "")).strip().lower()
    if task not in TASKS:
        raise Rejected(f"unknown task {obj.get('task')!r}")
    return {"task": task, "output_caption": _check_caption(obj.get("output_caption"), caption, "the reply")}


def write_edit(writer: InstructionWriter, caption: str, instruction: str,
               retries: int) -> tuple[dict | None, list[str]]:
    """({"task", "output_caption"} or None, the rejection reasons of each failed attempt) for one instruction."""
    return _with_retries(lambda a: writer.edit(caption, instruction, a), lambda r: parse_edit_reply(r, caption),
                         retries)


def _with_retries(reply, parse, retries: int) -> tuple[object | None, list[str]]:
    """(parse(reply(attempt)) of the first attempt that passes, or None; the reason each failed attempt gave)."""
    reasons = []
    for attempt in range(retries + 1):
        try:
            return parse(reply(attempt)), reasons
        except Rejected as e:
            reasons.append(str(e))
        except (OSError, urllib.error.URLError, TimeoutError) as e:
            reasons.append(f"backend error: {e}")
    return None, reasons


def parse_subject_reply(text: str, caption: str, subject: str) -> list[dict]:
    """The validated subject edits of a reply (task add or local, the subject named in instruction and output
    caption); raises Rejected with the reason."""
    obj = json_object(text)
    edits = obj.get("edits") if isinstance(obj, dict) else None
    if not isinstance(edits, list) or not edits:
        raise Rejected('missing or empty list "edits"')
    out = []
    for i, e in enumerate(edits):
        edit = _edit_fields(e, i, caption, SUBJECT_TASKS)
        for what in ("instruction", "output_caption"):
            if subject.lower() not in edit[what].lower():
                raise Rejected(f"edit {i} {what} does not name the subject {subject!r}")
        out.append(edit)
    return out


def write_subject_edits(writer, caption: str, subject: str, retries: int) -> tuple[list[dict] | None, list[str]]:
    """(subject edits or None, the rejection reasons of each failed attempt), from the writer's `subject` method."""
    return _with_retries(lambda a: writer.subject(caption, subject, a),
                         lambda r: parse_subject_reply(r, caption, subject), retries)


def write_instructions(writer: InstructionWriter, caption: str, retries: int) -> tuple[list[dict] | None, list[str]]:
    """(edits or None, the rejection reasons of each failed attempt)."""
    return _with_retries(lambda a: writer(caption, a), lambda r: parse_reply(r, caption), retries)


class TemplateWriter:
    """Offline writer: a phrase per task, chosen by a per-caption seed. Generic, but valid for any caption."""

    PHRASES = {
        "add": [("add a red balloon", "{c}, with a red balloon"), ("add a small dog", "{c}, with a small dog"),
                ("add falling snow", "{c}, with falling snow")],
        "remove": [("remove the main subject", "{c}, without its main subject"),
                   ("remove the object in the foreground", "{c}, with nothing in the foreground")],
        "background": [("change the background to a beach", "{c}, in front of a beach"),
                       ("replace the background with a snowy forest", "{c}, in front of a snowy forest")],
        "texture": [("make it look like it is made of wood", "{c}, made of wood"),
                    ("give the main subject a knitted texture", "{c}, with a knitted texture")],
        "local": [("make the main subject red", "{c}, with the main subject coloured red"),
                  ("make the main subject golden", "{c}, with a golden main subject")],
        "style": [("turn it into a watercolor painting", "a watercolor painting of {c}"),
                  ("make it look like a pencil sketch", "a pencil sketch of {c}")],
        "global": [("make it nighttime", "{c}, at night"), ("make it look like winter", "{c}, in winter")],
    }

    SUBJECT = [("add", "add {s}", "{c}, with {s}"), ("add", "add {s} next to the main subject", "{c}, with {s} next "
               "to the main subject"), ("local", "replace the main subject with {s}", "{c}, with {s} in place of the "
               "main subject")]

    def __init__(self, seed: int = 0):
        self.seed = seed

    def subject(self, caption: str, subject: str, attempt: int) -> str:
        """Every SUBJECT phrase for this caption (generic; a chat model writes ones that fit the scene)."""
        c = caption.strip().rstrip(".")
        return json.dumps({"edits": [{"task": t, "instruction": ins.format(s=subject),
                                      "output_caption": out.format(c=c, s=subject)} for t, ins, out in self.SUBJECT]})

    def __call__(self, caption: str, attempt: int) -> str:
        rng = random.Random(f"{self.seed}:{caption}:{attempt}")
        c = caption.strip().rstrip(".")
        edits = []
        for task in TASKS:
            ins, out = rng.choice(self.PHRASES[task])
            edits.append({"task": task, "instruction": ins, "output_caption": out.format(c=c)})
        return json.dumps({"edits": edits})

    # Output captions for an instruction that is not one of the phrases: the instruction's object after its verb.
    GENERIC = {"add": "{c}, with {rest}", "remove": "{c}, without {rest}", "background": "{c}, in front of {rest}",
               "texture": "{c}, {rest}", "local": "{c}, {rest}", "style": "{c}, as {rest}", "global": "{c}, {rest}"}

    def edit(self, caption: str, instruction: str, attempt: int) -> str:
        """The task by eve.tasks' rules; the output caption from the phrase's own caption when the instruction is
        one of PHRASES, else from GENERIC with the instruction's leading verb dropped."""
        from eve.tasks import predict_task

        c, ins = caption.strip().rstrip("."), " ".join(instruction.strip().rstrip(".").split())
        task = predict_task(ins).task
        for phrase, out in (p for phrases in self.PHRASES.values() for p in phrases):
            if phrase == ins.lower():
                return json.dumps({"task": task, "output_caption": out.format(c=c)})
        rest = re.sub(r"^(please |add |insert |put |place |remove |delete |erase |change the background to |"
                      r"replace the background with |make |turn |give |render |convert )+", "", ins, flags=re.I)
        return json.dumps({"task": task, "output_caption": self.GENERIC[task].format(c=c, rest=rest)})


def subject_messages(caption: str, subject: str, count: int = 3) -> list[dict]:
    return [{"role": "user", "content": SUBJECT_PROMPT.format(caption=caption, subject=subject, count=count)}]


def messages(caption: str) -> list[dict]:
    return [{"role": "user", "content": PROMPT.format(caption=caption, tasks=", ".join(TASKS))}]


def edit_messages(caption: str, instruction: str) -> list[dict]:
    return [{"role": "user", "content": EDIT_PROMPT.format(caption=caption, instruction=instruction,
                                                          tasks=", ".join(TASKS))}]


class TransformersWriter:
    """A local chat model; sampling varies with the attempt."""

    def __init__(self, model_dir: str, max_new_tokens: int = 512):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from eve.errors import EveError

        try:
            self.tok = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
            self.model = AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True).eval()
        except (OSError, ValueError) as e:
            raise EveError(f"cannot load llm_model {model_dir}: {str(e).splitlines()[0]}") from None
        self.max_new_tokens = max_new_tokens

    def __call__(self, caption: str, attempt: int) -> str:
        return self.chat(messages(caption), attempt)

    def edit(self, caption: str, instruction: str, attempt: int) -> str:
        return self.chat(edit_messages(caption, instruction), attempt)

    def subject(self, caption: str, subject: str, attempt: int) -> str:
        return self.chat(subject_messages(caption, subject), attempt)

    def chat(self, msgs: list[dict], attempt: int) -> str:
        import torch

        ids = self.tok.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt",
                                           return_dict=True)
        torch.manual_seed(attempt)
        with torch.no_grad():
            out = self.model.generate(**ids, max_new_tokens=self.max_new_tokens, do_sample=attempt > 0,
                                      temperature=0.7 if attempt > 0 else None, pad_token_id=self.tok.pad_token_id
                                      if self.tok.pad_token_id is not None else self.tok.eos_token_id)
        return self.tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)


class OpenAIWriter:
    """POST {url}/chat/completions, JSON mode requested; the reply's first choice is parsed."""

    def __init__(self, url: str, model: str, timeout: float = 60.0):
        self.url = url.rstrip("/") + "/chat/completions"
        self.model, self.timeout = model, timeout

    def __call__(self, caption: str, attempt: int) -> str:
        return self.chat(messages(caption), attempt)

    def edit(self, caption: str, instruction: str, attempt: int) -> str:
        return self.chat(edit_messages(caption, instruction), attempt)

    def subject(self, caption: str, subject: str, attempt: int) -> str:
        return self.chat(subject_messages(caption, subject), attempt)

    def chat(self, msgs: list[dict], attempt: int) -> str:
        body = {"model": self.model, "messages": msgs, "temperature": 0.0 if attempt == 0 else 0.7,
                "response_format": {"type": "json_object"}, "seed": attempt}
        req = urllib.request.Request(self.url, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json", "Authorization": "Bearer none"})
        with urllib.request.urlopen(req, timeout=self.timeout) as r:
            reply = json.loads(r.read())
        try:
            return reply["choices"][0]["message"]["content"] or ""
        except (KeyError, IndexError, TypeError):
            raise Rejected("the server's reply has no choices[0].message.content") from None


def check_writer(kind: str, *, llm_model: str | None = None, llm_url: str | None = None,
                 field: str = "instructions", needs: str = "edit") -> None:
    """What make_writer would refuse, without loading a model or calling a server; a `module:attr` writer must have
    the method `needs` (edit, subject, or __call__ for the seven tasks)."""
    from eve.errors import EveError

    if kind == "transformers" and not llm_model:
        raise EveError(f"{field}=transformers needs llm_model (a local chat model folder)")
    if kind == "openai" and not (llm_url and llm_model):
        raise EveError(f"{field}=openai needs llm_url and llm_model")
    if kind not in ("template", "transformers", "openai"):
        obj = load_entry_point(kind, field, instantiate=False)
        cls = obj if isinstance(obj, type) else type(obj)  # (every class has a __call__: its constructor)
        if not any(needs in vars(c) for c in cls.__mro__ if c is not object):
            signature = {"edit": "edit(caption, instruction, attempt)", "subject": "subject(caption, subject, attempt)",
                         "__call__": "__call__(caption, attempt)"}.get(needs, needs)
            raise EveError(f"{field}={kind!r} has no {signature} method")


def make_writer(kind: str, *, llm_model: str | None = None, llm_url: str | None = None, seed: int = 0,
                max_new_tokens: int = 512, field: str = "instructions", needs: str = "edit") -> InstructionWriter:
    """The writer a config names: template | transformers | openai, or `module:attr` (a class or object with the
    writer methods, e.g. a world's own writer); `field` names the config key in error lines."""
    check_writer(kind, llm_model=llm_model, llm_url=llm_url, field=field, needs=needs)
    if kind == "template":
        return TemplateWriter(seed)
    if kind == "transformers":
        return TransformersWriter(llm_model, max_new_tokens)
    if kind == "openai":
        return OpenAIWriter(llm_url, llm_model)
    return load_entry_point(kind, field)


def load_entry_point(ref: str, field: str, *, instantiate: bool = True):
    """`module:attr` -> the attribute (instantiated when it is a class and `instantiate`); a bad reference is one
    EveError line."""
    import importlib

    from eve.errors import EveError

    module, _, attr = ref.partition(":")
    try:
        obj = getattr(importlib.import_module(module), attr) if attr else None
    except (ImportError, AttributeError, ValueError):
        obj = None
    if obj is None:
        raise EveError(f"{field}={ref!r} is neither a known name nor an importable module:attr")
    return obj() if instantiate and isinstance(obj, type) else obj
