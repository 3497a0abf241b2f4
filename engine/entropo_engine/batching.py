"""Continuous batching with per-sequence KV caches and a bounded prefix cache, for the server.

One scheduler thread owns the model. Every step it runs ONE forward over a ragged batch: one new token for
each decoding sequence plus a chunk of prompt tokens for sequences still being prefilled (chunked prefill,
so a long prompt never stalls the others for more than one chunk). All tokens of the step go through the
linear layers together as one (tokens × hidden) matrix, which is where batching pays on a CPU (the weights
are read once per step, not once per sequence). Attention runs per sequence against that sequence's own
preallocated KV buffer, with no padding and no cross-sequence mask, so a sequence's numbers do not depend
on what else is in the batch (up to float rounding of the batched matrix products; measured in
engine/README.md).

LoRA adapters: every token carries the name of its model (an adapter or the base), and peft's mixed-batch
LoRA forward (`adapter_names`) applies each adapter to its own rows, so base and adapter requests share a
step and each gets its own model's output.

Prefix cache: when a sequence finishes, its KV buffer is kept under its token ids (and model name). A new
request re-uses the longest cached token prefix of the same model and prefills only the rest, as vLLM's
and llama.cpp's prefix caches do. The cache is an LRU bounded in bytes; an entry that another one extends
(the previous turn of the same conversation) is dropped at once.
"""

from __future__ import annotations

import collections
import random
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from .errors import InvalidInputError

BASE = "__base__"  # peft's name for "no adapter" in a mixed batch


# ---------------------------------------------------------------------------------------------- model


class RaggedForward:
    """A Llama-architecture decoder (SmolLM2, Llama, Qwen2) run over a ragged batch of sequences."""

    SUPPORTED = ("llama", "qwen2")

    def __init__(self, model):
        self.model = model
        cfg = model.config
        if cfg.model_type not in self.SUPPORTED:
            raise InvalidInputError(f"model: the batched server supports {', '.join(self.SUPPORTED)} models, not '{cfg.model_type}'")
        self.n_layers = cfg.num_hidden_layers
        self.n_heads = cfg.num_attention_heads
        self.n_kv = cfg.num_key_value_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        self.context = cfg.max_position_embeddings
        p = next(model.parameters())
        self.device, self.dtype = p.device, p.dtype
        self.bytes_per_token = self.n_layers * 2 * self.n_kv * self.head_dim * p.element_size()

    def set_model(self, model) -> None:
        self.model = model

    def new_buffer(self, capacity: int) -> torch.Tensor:
        return torch.empty(self.n_layers, 2, self.n_kv, capacity, self.head_dim, device=self.device, dtype=self.dtype)

    @staticmethod
    def _call(module, x, names):
        from peft.tuners.lora import LoraLayer

        if names is not None and isinstance(module, LoraLayer):
            return module(x, adapter_names=names)
        return module(x)

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Grouped-query attention of one sequence: q (heads, t, d), k/v (kv heads, L, d), mask (t, L) or None.
        One query (decoding) is written out as two matmuls: torch's CPU flash kernel costs ~2 ms a call for
        it. Prompt chunks use SDPA, which fuses scaling, mask and softmax."""
        heads, t, d = q.shape
        if t > 1:
            return F.scaled_dot_product_attention(
                q.unsqueeze(0), k.unsqueeze(0), v.unsqueeze(0), attn_mask=None if k.shape[1] == t else mask,
                is_causal=k.shape[1] == t, enable_gqa=True,
            )[0]
        group = heads // self.n_kv
        scores = torch.matmul(q.reshape(self.n_kv, group * t, d), k.transpose(1, 2)) * d**-0.5
        if mask is not None:
            scores = scores.view(self.n_kv, group, t, -1).masked_fill(~mask, float("-inf")).view(self.n_kv, group * t, -1)
        return torch.matmul(scores.softmax(-1), v).view(heads, t, d)

    @torch.no_grad()
    def __call__(self, chunks: list[tuple[torch.Tensor, int, list[int]]], names: list[str] | None, want: list[int]) -> torch.Tensor:
        """chunks: (kv buffer, start position, new token ids) per sequence; the new tokens' K/V are written
        into the buffer at [start, start+len). names: the model name of every token (None: no adapters).
        want: flat indices of the tokens whose next-token logits are returned (float32, (len(want), vocab))."""
        from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

        base = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
        body = base.model
        ids = torch.tensor([t for _, _, toks in chunks for t in toks], device=self.device)
        pos = torch.tensor([s + i for _, s, toks in chunks for i in range(len(toks))], device=self.device)
        n = len(ids)
        h = self._call(body.embed_tokens, ids, names)
        cos, sin = body.rotary_emb(h.unsqueeze(0), pos.unsqueeze(0))
        spans, o = [], 0
        for buf, start, toks in chunks:
            t = len(toks)
            mask = None
            if t > 1:  # new tokens see the whole cached prefix and each other causally
                mask = torch.ones(t, start + t, dtype=torch.bool, device=self.device).tril(diagonal=start)
            spans.append((buf, start, t, o, mask))
            o += t
        for li, layer in enumerate(body.layers):
            attn = layer.self_attn
            x = layer.input_layernorm(h)
            q = self._call(attn.q_proj, x, names).view(n, self.n_heads, self.head_dim).transpose(0, 1).unsqueeze(0)
            k = self._call(attn.k_proj, x, names).view(n, self.n_kv, self.head_dim).transpose(0, 1).unsqueeze(0)
            v = self._call(attn.v_proj, x, names).view(n, self.n_kv, self.head_dim).transpose(0, 1)
            q, k = apply_rotary_pos_emb(q, k, cos, sin)
            out = torch.empty(self.n_heads, n, self.head_dim, device=self.device, dtype=h.dtype)
            for buf, start, t, o, mask in spans:
                kv = buf[li]
                kv[0, :, start : start + t] = k[0, :, o : o + t]
                kv[1, :, start : start + t] = v[:, o : o + t]
                out[:, o : o + t] = self._attend(q[0, :, o : o + t], kv[0, :, : start + t], kv[1, :, : start + t], mask)
            h = h + self._call(attn.o_proj, out.transpose(0, 1).reshape(n, self.n_heads * self.head_dim), names)
            x = layer.post_attention_layernorm(h)
            mlp = layer.mlp
            h = h + self._call(mlp.down_proj, mlp.act_fn(self._call(mlp.gate_proj, x, names)) * self._call(mlp.up_proj, x, names), names)
        h = body.norm(h[want])
        logits = self._call(base.get_output_embeddings(), h, None if names is None else [names[i] for i in want])
        return logits.float()


# ---------------------------------------------------------------------------------------------- prefix cache


@dataclass
class CacheEntry:
    model: str
    tokens: np.ndarray  # the token ids whose K/V the buffer holds, in order
    kv: torch.Tensor
    nbytes: int


class PrefixCache:
    """LRU of finished sequences' KV buffers, keyed by (model name, token ids), bounded in bytes."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.entries: collections.OrderedDict[int, CacheEntry] = collections.OrderedDict()
        self.bytes = 0
        self.hits = self.lookups = self.evictions = self.hit_tokens = 0
        self._next = 0

    def lookup(self, model: str, tokens: list[int]) -> tuple[CacheEntry | None, int]:
        """The entry sharing the longest token prefix with `tokens` (at most len-1: the last prompt token is
        always run, it gives the first logits) and that length."""
        self.lookups += 1
        a = np.asarray(tokens)
        best, best_n, best_key = None, 0, None
        for key, e in self.entries.items():
            if e.model != model:
                continue
            m = min(len(a) - 1, len(e.tokens))
            diff = np.flatnonzero(a[:m] != e.tokens[:m])
            common = int(diff[0]) if len(diff) else m
            if common >= best_n and common > 0:  # on a tie the most recently used entry wins (it stays warm)
                best, best_n, best_key = e, common, key
        if best is not None:
            self.entries.move_to_end(best_key)
            self.hits += 1
            self.hit_tokens += best_n
        return best, best_n

    def insert(self, model: str, tokens: list[int], kv: torch.Tensor) -> None:
        a = np.asarray(tokens)
        nbytes = kv.numel() * kv.element_size()
        for key, e in list(self.entries.items()):  # entries this one extends are redundant now
            if e.model == model and len(e.tokens) <= len(a) and np.array_equal(e.tokens, a[: len(e.tokens)]):
                self._drop(key)
        if nbytes > self.max_bytes:
            return
        while self.entries and self.bytes + nbytes > self.max_bytes:
            self._drop(next(iter(self.entries)))
            self.evictions += 1
        self.entries[self._next] = CacheEntry(model, a, kv, nbytes)
        self._next += 1
        self.bytes += nbytes

    def drop_model(self, model: str) -> None:
        for key, e in list(self.entries.items()):
            if e.model == model:
                self._drop(key)

    def _drop(self, key: int) -> None:
        self.bytes -= self.entries.pop(key).nbytes

    def stats(self) -> dict:
        return {"entries": len(self.entries), "tokens": int(sum(len(e.tokens) for e in list(self.entries.values()))),  # list(): one atomic snapshot
                "bytes": self.bytes, "max_bytes": self.max_bytes, "lookups": self.lookups, "hits": self.hits,
                "hit_tokens": self.hit_tokens, "evictions": self.evictions}


# ---------------------------------------------------------------------------------------------- sampling


@dataclass
class Sampling:
    temperature: float
    top_p: float
    top_k: int
    min_p: float
    seed: int | None


def sample(logits: torch.Tensor, s: Sampling, gen: torch.Generator) -> int:
    """One token from one row of logits: greedy at temperature 0, else temperature → top-k → top-p → min-p
    (vLLM's order), drawn with the sequence's own generator."""
    if s.temperature == 0:
        return int(logits.argmax())
    x = logits / s.temperature
    if s.top_k > 0 and s.top_k < x.numel():
        kth = torch.topk(x, s.top_k).values[-1]
        x = x.masked_fill(x < kth, float("-inf"))
    if s.top_p < 1:
        sorted_x, order = torch.sort(x, descending=True)
        probs = sorted_x.softmax(-1)
        drop = probs.cumsum(-1) - probs > s.top_p  # keep the smallest set whose mass reaches top_p
        x = x.scatter(0, order[drop], float("-inf"))
    probs = x.softmax(-1)
    if s.min_p > 0:
        probs = probs.masked_fill(probs < s.min_p * probs.max(), 0)
    return int(torch.multinomial(probs, 1, generator=gen))


# ---------------------------------------------------------------------------------------------- scheduler


@dataclass
class Choice:
    """One sequence being generated (one of a request's `n`)."""

    req: GenRequest
    index: int
    gen: torch.Generator
    kv: torch.Tensor | None = None
    filled: int = 0  # positions of kv already written
    pending: list[int] = field(default_factory=list)  # tokens still to run (prompt chunk or last sampled token)
    tokens: list[int] = field(default_factory=list)  # sampled tokens
    logprobs: list[dict] = field(default_factory=list)  # per sampled token: its id, raw log-prob, top alternatives
    finish: str | None = None


@dataclass
class GenRequest:
    model: str  # an adapter's name, or BASE
    prompt: list[int]
    max_new: int
    n: int
    sampling: Sampling
    stops: list[str]
    top_logprobs: int
    want_logprobs: bool
    ignore_eos: bool = False
    arrived: float = field(default_factory=time.perf_counter)
    admitted: float = 0.0
    first_token: float = 0.0
    cached_tokens: int = 0
    choices: list[Choice] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)
    error: Exception | None = None


class QueueFull(Exception):
    pass


class Scheduler:
    """Admits requests, runs batched steps, finishes requests. `control` jobs (adapter load/unload) run
    between steps once no sequence is in flight."""

    def __init__(self, forward: RaggedForward, tokenizer, eos: set[int], *, max_queue: int, max_running: int,
                 max_step_tokens: int, prefix_cache_bytes: int, adapters: dict):
        self.forward, self.tokenizer, self.eos = forward, tokenizer, eos
        self.max_queue, self.max_running, self.max_step_tokens = max_queue, max_running, max_step_tokens
        self.cache = PrefixCache(prefix_cache_bytes)
        self.adapters = adapters  # the loaded adapters by name (the server's dict, changed only in this thread)
        self.waiting: collections.deque[GenRequest] = collections.deque()
        self.control: collections.deque = collections.deque()
        self.running: list[Choice] = []
        self.cond = threading.Condition()
        self.steps = self.step_tokens = 0
        self.stopped = False

    # ---------------------------------------------------------------- called from HTTP threads

    def submit(self, req: GenRequest) -> None:
        with self.cond:
            if len(self.waiting) >= self.max_queue:
                raise QueueFull()
            self.waiting.append(req)
            self.cond.notify()

    def run_control(self, job) -> None:
        with self.cond:
            self.control.append(job)
            self.cond.notify()

    def stop(self) -> None:
        with self.cond:
            self.stopped = True
            self.cond.notify()

    def stats(self) -> dict:
        with self.cond:
            return {"running": len(self.running), "waiting": len(self.waiting), "steps": self.steps,
                    "step_tokens": self.step_tokens, "prefix_cache": self.cache.stats()}

    # ---------------------------------------------------------------- the model thread

    def loop(self) -> None:
        while True:
            with self.cond:
                while not self.stopped and not self.running and not self.waiting and not self.control:
                    self.cond.wait()
                if self.stopped:
                    return
                controls = []
                if self.control and not self.running:  # adapter changes never interleave with generation
                    controls = list(self.control)
                    self.control.clear()
                admitted = []
                if not self.control:  # a pending adapter change lets the running sequences drain first
                    in_flight = len(self.running) + sum(c.req.n - 1 for c in self.running if c.index == 0 and not c.tokens)
                    while self.waiting and (in_flight == 0 or in_flight + self.waiting[0].n <= self.max_running):
                        in_flight += self.waiting[0].n
                        admitted.append(self.waiting.popleft())
            for job in controls:
                job.run()
            for req in admitted:
                try:
                    self._admit(req)
                except Exception as e:  # e.g. out of memory for its KV buffer: this request fails, others go on
                    self._fail(req, e)
            if self.running:
                try:
                    self._step()
                except Exception as e:  # a bug or an exhausted resource mid-step: fail what was in flight, keep serving
                    for req in {id(c.req): c.req for c in self.running}.values():
                        self._fail(req, e)

    def _admit(self, req: GenRequest) -> None:
        req.admitted = time.perf_counter()
        if req.model != BASE and req.model not in self.adapters:  # unloaded while the request waited
            req.error = LookupError(req.model)
            req.done.set()
            return
        entry, n_cached = self.cache.lookup(req.model, req.prompt)
        req.cached_tokens = n_cached
        capacity = len(req.prompt) + min(req.max_new, 256)  # grown on demand: max_tokens is often far more than used
        for i in range(req.n):
            seed = req.sampling.seed if req.sampling.seed is not None else random.SystemRandom().randrange(2**62)
            gen = torch.Generator(device="cpu").manual_seed(seed + 1_000_003 * i)
            req.choices.append(Choice(req, i, gen))
        lead = req.choices[0]
        lead.kv = self.forward.new_buffer(capacity)
        if entry is not None:
            lead.kv[:, :, :, :n_cached] = entry.kv[:, :, :, :n_cached]
        lead.filled = n_cached
        lead.pending = req.prompt[n_cached:]
        self.running.append(lead)  # the other choices join when the lead's prompt is prefilled

    def _step(self) -> None:
        budget = self.max_step_tokens
        batch: list[tuple[Choice, list[int]]] = []
        for c in self.running:  # decoding sequences first: one token each
            if c.tokens:
                batch.append((c, c.pending))
                budget -= 1
        for c in self.running:  # then prompt chunks, oldest first, within the step's token budget
            if not c.tokens and budget > 0:
                chunk = c.pending[:budget]
                batch.append((c, chunk))
                budget -= len(chunk)
        for c, toks in batch:
            self._reserve(c, c.filled + len(toks))
        chunks = [(c.kv, c.filled, toks) for c, toks in batch]
        names = None
        if self.adapters:
            names = [c.req.model for c, toks in batch for _ in toks]
        want, o, wanting = [], 0, []
        for c, toks in batch:
            o += len(toks)
            if len(toks) == len(c.pending):  # the sequence's last pending token: its logits are needed
                want.append(o - 1)
                wanting.append(c)
        try:
            logits = self.forward(chunks, names, want)
        except Exception as e:  # fail the requests of this step, keep serving the others
            for c, _ in batch:
                self._fail(c.req, e)
            return
        self.steps += 1
        self.step_tokens += o
        for c, toks in batch:
            c.filled += len(toks)
            c.pending = c.pending[len(toks):]
        for c, row in zip(wanting, logits):
            if not c.tokens and c.index == 0 and c.req.n > 1:
                self._fork(c, row)
            else:
                self._advance(c, row)
        self.running = [c for c in self.running if c.finish is None]

    def _reserve(self, c: Choice, size: int) -> None:
        if c.kv.shape[3] < size:
            grown = self.forward.new_buffer(min(max(size, 2 * c.kv.shape[3]), len(c.req.prompt) + c.req.max_new))
            grown[:, :, :, : c.filled] = c.kv[:, :, :, : c.filled]
            c.kv = grown

    def _fork(self, lead: Choice, row: torch.Tensor) -> None:
        req = lead.req
        for c in req.choices[1:]:
            c.kv = lead.kv.clone()
            c.filled = lead.filled
            self.running.append(c)
        for c in req.choices:
            self._advance(c, row)

    def _advance(self, c: Choice, row: torch.Tensor) -> None:
        req = c.req
        if not req.first_token:
            req.first_token = time.perf_counter()
        logp = torch.log_softmax(row, dim=-1)
        t = sample(row, req.sampling, c.gen)
        entry = {"id": t, "logprob": float(logp[t])}
        if req.top_logprobs:
            values, indices = logp.topk(req.top_logprobs)
            entry["top"] = list(zip(indices.tolist(), values.tolist()))
        c.tokens.append(t)
        c.logprobs.append(entry)
        if t in self.eos and not req.ignore_eos:
            c.finish = "stop"
        elif req.stops and any(s in self.tokenizer.decode(c.tokens, skip_special_tokens=True) for s in req.stops):
            c.finish = "stop"
        elif len(c.tokens) >= req.max_new:
            c.finish = "length"
        else:
            c.pending = [t]
            return
        self._finish_choice(c)

    def _finish_choice(self, c: Choice) -> None:
        req = c.req
        ran = (req.prompt + c.tokens)[: c.filled]  # the tokens whose K/V the buffer holds
        kv = c.kv if c.filled * 4 >= c.kv.shape[3] * 3 else c.kv[:, :, :, : c.filled].clone()  # no large unused tail in the cache
        self.cache.insert(req.model, ran, kv)
        c.kv = None
        if all(x.finish is not None for x in req.choices):
            req.done.set()

    def _fail(self, req: GenRequest, e: Exception) -> None:
        req.error = e
        for c in req.choices:
            c.finish = c.finish or "error"
            c.kv = None
        self.running = [c for c in self.running if c.req is not req]
        req.done.set()
