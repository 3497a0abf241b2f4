"""Training data: reading JSONL records, rendering conversations with the model's chat template, and the
token-level masks that keep every assistant turn and drop system, user and tool-observation tokens.

Record formats (one JSON object per line; `format: auto` detects them per line):
  trajectory  {"id", "messages": [{"role", "content"}...], "resolved"?: bool}
  pair        {"id"?, "prompt"?: [msgs], "chosen": [msgs], "rejected": [msgs]}
  kto         {"id"?, "prompt"?: [msgs], "completion": [msgs], "label": bool}
  sharegpt    LLaMA-Factory multi-turn: {"conversations": [{"from", "value"}...], "system"?,
              "chosen"?/"rejected"? (ranking), "kto_tag"? (KTO)}
Roles: system, user, assistant, tool (an observation from the environment).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from .errors import InvalidInputError

ROLES = ("system", "user", "assistant", "tool")
SHAREGPT_ROLES = {
    "system": "system",
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "function_call": "assistant",
    "observation": "tool",
    "tool": "tool",
}

Messages = list[dict[str, str]]


@dataclass
class Record:
    """One training example before tokenisation. `chosen` doubles as the single conversation of an SFT,
    KTO or verifier example; `rejected` is set for pairs; `label` for KTO and verifier examples."""

    id: str
    chosen: Messages
    rejected: Messages | None = None
    label: bool | None = None
    where: str = ""


@dataclass
class Tokenized:
    input_ids: list[int]
    mask: list[bool]  # True for tokens that belong to an assistant turn
    turns_cut: int = 0

    def __len__(self) -> int:
        return len(self.input_ids)


@dataclass
class TruncationReport:
    cut: list[dict] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"records_cut": len(self.cut), "records_skipped": len(self.skipped), "cut": self.cut, "skipped": self.skipped}


class SkipRecord(Exception):
    pass


# ---------------------------------------------------------------- reading


def _fail(where: str, field_path: str, msg: str):
    raise InvalidInputError(f"{where}: field '{field_path}': {msg}")


def _messages(value, where: str, field_path: str) -> Messages:
    if not isinstance(value, list):
        _fail(where, field_path, f"must be a list of messages, got {type(value).__name__}")
    out = []
    for i, m in enumerate(value):
        if not isinstance(m, dict):
            _fail(where, f"{field_path}[{i}]", "must be an object with 'role' and 'content'")
        role, content = m.get("role"), m.get("content")
        if role not in ROLES:
            _fail(where, f"{field_path}[{i}].role", f"must be one of {', '.join(ROLES)}, got {role!r}")
        if not isinstance(content, str):
            _fail(where, f"{field_path}[{i}].content", "must be a string")
        out.append({"role": role, "content": content})
    return out


def _sharegpt_messages(row: dict, where: str) -> Messages:
    turns = row.get("conversations")
    if not isinstance(turns, list):
        _fail(where, "conversations", "must be a list of {from, value}")
    msgs = [{"role": "system", "content": row["system"]}] if isinstance(row.get("system"), str) and row["system"] else []
    for i, t in enumerate(turns):
        role = SHAREGPT_ROLES.get(t.get("from") if isinstance(t, dict) else None)
        if role is None:
            _fail(where, f"conversations[{i}].from", f"must be one of {', '.join(SHAREGPT_ROLES)}")
        if not isinstance(t.get("value"), str):
            _fail(where, f"conversations[{i}].value", "must be a string")
        msgs.append({"role": role, "content": t["value"]})
    return msgs


def detect_format(row: dict) -> str:
    if "conversations" in row:
        return "sharegpt"
    if "chosen" in row and "rejected" in row:
        return "pair"
    if "completion" in row and "label" in row:
        return "kto"
    if "messages" in row:
        return "trajectory"
    return "unknown"


def parse_record(row: dict, fmt: str, where: str, index: int) -> Record:
    fmt = detect_format(row) if fmt == "auto" else fmt
    rid = str(row.get("id", row.get("instance_id", index)))
    if fmt == "trajectory":
        resolved = row.get("resolved")
        if resolved is not None and not isinstance(resolved, bool):
            _fail(where, "resolved", "must be true or false")
        return Record(rid, _messages(row.get("messages"), where, "messages"), label=resolved, where=where)
    if fmt == "pair":
        prompt = _messages(row.get("prompt", []), where, "prompt")
        return Record(
            rid,
            prompt + _messages(row.get("chosen"), where, "chosen"),
            prompt + _messages(row.get("rejected"), where, "rejected"),
            where=where,
        )
    if fmt == "kto":
        if not isinstance(row.get("label"), bool):
            _fail(where, "label", "must be true or false")
        prompt = _messages(row.get("prompt", []), where, "prompt")
        return Record(rid, prompt + _messages(row.get("completion"), where, "completion"), label=row["label"], where=where)
    if fmt == "sharegpt":
        msgs = _sharegpt_messages(row, where)
        if "chosen" in row or "rejected" in row:
            ends = []
            for key in ("chosen", "rejected"):
                end = row.get(key)
                if not isinstance(end, dict) or not isinstance(end.get("value"), str):
                    _fail(where, key, "must be an object {from, value}")
                ends.append({"role": SHAREGPT_ROLES.get(end.get("from"), "assistant"), "content": end["value"]})
            return Record(rid, msgs + [ends[0]], msgs + [ends[1]], where=where)
        tag = row.get("kto_tag")
        if tag is not None and not isinstance(tag, bool):
            _fail(where, "kto_tag", "must be true or false")
        return Record(rid, msgs, label=tag, where=where)
    raise InvalidInputError(
        f"{where}: cannot tell the record format (expected 'messages', 'chosen'+'rejected', 'completion'+'label' or 'conversations')"
    )


def read_records(path: str | Path, fmt: str = "auto") -> list[Record]:
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except OSError as e:
        raise InvalidInputError(f"{path}: cannot read data: {e.strerror}") from e
    records = []
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise InvalidInputError(f"{where}: not valid JSON: {e.msg}") from e
        if not isinstance(row, dict):
            raise InvalidInputError(f"{where}: a record must be a JSON object")
        records.append(parse_record(row, fmt, where, len(records)))
    if not records:
        raise InvalidInputError(f"{path}: no records")
    return records


def require(records: list[Record], mode: str) -> None:
    """Checks that every record carries what the training mode needs."""
    for r in records:
        if mode == "entropo-dpo" and r.rejected is None:
            raise InvalidInputError(f"{r.where}: entropo-dpo needs preference pairs ('chosen' and 'rejected')")
        if mode in ("entropo-kto", "verifier") and r.label is None:
            key = "label" if mode == "entropo-kto" else "resolved"
            raise InvalidInputError(f"{r.where}: field '{key}': {mode} needs a true/false label on every record")
        for msgs in (m for m in (r.chosen, r.rejected) if m is not None):
            if not any(m["role"] == "assistant" for m in msgs):
                raise InvalidInputError(f"{r.where}: the conversation has no assistant turn, so nothing to learn from")


# ---------------------------------------------------------------- rendering and masks


def render(tokenizer, messages: Messages, add_generation_prompt: bool = False) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)


def assistant_char_spans(tokenizer, messages: Messages) -> tuple[str, list[tuple[int, int]]]:
    """Renders the conversation and returns the character span of every assistant turn (its content and
    end-of-turn marker). Spans come from rendering growing prefixes, which needs a template whose rendering
    of a prefix is a prefix of the whole (true of ChatML, Llama and Qwen templates); otherwise it fails."""
    text = render(tokenizer, messages)
    spans = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        before = render(tokenizer, messages[:i], add_generation_prompt=True) if i else ""
        through = render(tokenizer, messages[: i + 1])
        if not through.startswith(before) or not text.startswith(through):
            raise InvalidInputError(
                "the model's chat template does not render a conversation prefix as a prefix of the whole; "
                "assistant-token masks cannot be built from it"
            )
        spans.append((len(before), len(through)))
    return text, spans


def tokenize_messages(tokenizer, messages: Messages) -> Tokenized:
    text, spans = assistant_char_spans(tokenizer, messages)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    mask = []
    for start, _end in enc["offset_mapping"]:
        mask.append(any(a <= start < b for a, b in spans))
    return Tokenized(list(enc["input_ids"]), mask)


def _first_assistant(messages: Messages) -> int:
    return next(i for i, m in enumerate(messages) if m["role"] == "assistant")


def fit_to_length(tokenizer, messages: Messages, max_length: int, policy: str, where: str, report: TruncationReport) -> Tokenized:
    """Tokenises a conversation, applying the truncation policy when it is longer than max_length.

    cut_middle keeps the system+task prefix (everything before the first assistant turn) and the end of the
    trajectory, dropping whole turns after the prefix, oldest first, until it fits. The end is never cut: it
    holds the final patch and submission that decide the trajectory's label. If the prefix plus the last
    assistant turn do not fit, the record is skipped (and reported)."""
    tok = tokenize_messages(tokenizer, messages)
    if len(tok) <= max_length:
        return tok
    if policy == "error":
        raise InvalidInputError(f"{where}: conversation has {len(tok)} tokens, more than data.max_length={max_length}")
    if policy == "cut_middle":
        head = _first_assistant(messages)
        for j in (i for i in range(head + 1, len(messages)) if messages[i]["role"] == "assistant"):
            cut = tokenize_messages(tokenizer, messages[:head] + messages[j:])
            if len(cut) <= max_length:
                cut.turns_cut = j - head
                report.cut.append({"where": where, "tokens_before": len(tok), "tokens_after": len(cut), "messages_cut": j - head})
                return cut
    report.skipped.append({"where": where, "tokens": len(tok), "reason": f"longer than max_length={max_length} even after cutting"})
    raise SkipRecord(where)


# ---------------------------------------------------------------- the verifier's view of a trajectory

VERIFIER_SYSTEM = (
    "You are a strict reviewer of software-engineering agent trajectories. Read the task and the agent's "
    "actions and observations, then answer YES if the final patch resolves the task and NO otherwise."
)


def verifier_messages(trajectory: Messages) -> Messages:
    """The conversation the verifier judges: the trajectory as a transcript, then the question. The answer
    (YES/NO) is the assistant turn that follows (training) or is read from the next-token log-probs (scoring)."""
    transcript = "\n\n".join(f"[{m['role']}]\n{m['content']}" for m in trajectory if m["role"] != "system")
    return [
        {"role": "system", "content": VERIFIER_SYSTEM},
        {"role": "user", "content": f"{transcript}\n\nDid the agent resolve the task? Answer YES or NO."},
    ]


def answer_token_ids(tokenizer) -> tuple[int, int]:
    """Token ids of the YES and NO answers at the start of an assistant turn (found, not assumed)."""
    yes = tokenizer.encode("YES", add_special_tokens=False)
    no = tokenizer.encode("NO", add_special_tokens=False)
    if not yes or not no or yes[0] == no[0]:
        raise InvalidInputError("the tokenizer cannot tell YES from NO by their first token")
    return yes[0], no[0]
