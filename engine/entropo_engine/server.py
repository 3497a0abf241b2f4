"""OpenAI-compatible HTTP server for a base model plus LoRA adapters loaded and unloaded at run time.

Endpoints (request shapes follow OpenAI and vLLM, so the same client code talks to vLLM in production):
  POST /v1/chat/completions   model, messages, temperature, top_p, top_k, min_p, max_tokens, seed, stop, n,
                              logprobs, top_logprobs
  GET  /v1/models             the base model and every loaded adapter
  POST /v1/load_lora_adapter  {"lora_name", "lora_path"}
  POST /v1/unload_lora_adapter {"lora_name"}
  GET  /health
  GET  /stats                 scheduler and prefix-cache counters

Requests are batched by one model thread (batching.py: continuous batching of decode steps, chunked
prefill, per-sequence KV caches, a bounded prefix cache across turns). Adapter loads and unloads run
between steps once the sequences in flight have finished. More than `max_queue` requests waiting to be
admitted answers 503. A prompt plus `max_tokens` longer than the model's context answers 400 with
error.code "context_length_exceeded". A request's `seed` seeds its own generator, so other requests in
the same batch never change its samples.
Log-probs are the raw model distribution (before temperature/top-k/top-p), as vLLM reports by default.
On start the server prints {"event": "listening", "url": ...} on stdout.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .batching import BASE, GenRequest, QueueFull, RaggedForward, Sampling, Scheduler
from .config import ServeConfig, describe_validation_error
from .models import load_causal_lm, load_tokenizer, pick_device, pick_dtype, resolve_model_dir
from .events import emit


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "user", "assistant", "tool"]
    content: str


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")  # clients send fields we do not use (user, metadata...)
    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    top_k: int = Field(-1, ge=-1)
    min_p: float = Field(0.0, ge=0, le=1)  # vLLM's extra sampling field
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    seed: int | None = None
    stop: str | list[str] | None = None
    n: int = Field(1, ge=1, le=16)
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=20)
    stream: bool = False
    ignore_eos: bool = False  # vLLM's extra field: generate max_tokens tokens (benchmarks)
    return_tokens_as_token_ids: bool = False  # vLLM's extra field: logprob tokens read "token_id:<id>"


class LoadAdapter(BaseModel):
    model_config = ConfigDict(extra="ignore")
    lora_name: str = Field(min_length=1)
    lora_path: str = Field(min_length=1)


class UnloadAdapter(BaseModel):
    model_config = ConfigDict(extra="ignore")
    lora_name: str = Field(min_length=1)


class HttpError(Exception):
    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", param: str | None = None, code: str | int | None = None):
        super().__init__(message)
        self.status, self.message, self.kind, self.param = status, message, kind, param
        self.code = status if code is None else code


class Host:
    """What every runtime shares: the request's checks, the chat template, the OpenAI response. A runtime
    (ModelHost here, llamacpp.LlamaCppHost) fills a GenRequest's choices in `generate`."""

    cfg: ServeConfig
    tokenizer: object
    context: int  # the model's context length in tokens
    eos: set[int]
    adapters: dict[str, str]  # loaded adapters: name -> the path they were loaded from

    def models(self) -> dict:
        base = self.cfg.served_model_name
        data = [{"id": base, "object": "model", "created": self.created, "owned_by": "entropo", "root": self.cfg.model, "parent": None}]
        data += [{"id": n, "object": "model", "created": self.created, "owned_by": "entropo", "root": p, "parent": base} for n, p in self.adapters.items()]
        return {"object": "list", "data": data}

    def check_new_adapter(self, req: LoadAdapter) -> None:
        if req.lora_name == self.cfg.served_model_name or req.lora_name in self.adapters:
            raise HttpError(400, f"The lora adapter '{req.lora_name}' has already been loaded.", param="lora_name")

    def check_loaded_adapter(self, req: UnloadAdapter) -> None:
        if req.lora_name not in self.adapters:
            raise HttpError(404, f"The lora adapter '{req.lora_name}' cannot be found.", "not_found_error", "lora_name")

    def generate(self, work: GenRequest) -> None:
        raise NotImplementedError

    def _token_entry(self, token_id: int, logprob: float, as_id: bool = False) -> dict:
        text = self.tokenizer.decode([token_id])
        return {"token": f"token_id:{token_id}" if as_id else text, "logprob": logprob, "bytes": list(text.encode("utf-8"))}

    def chat(self, req: ChatRequest) -> dict:
        """Runs in the request's HTTP thread: validates, tokenises, has the runtime generate, waits."""
        if req.stream:
            raise HttpError(400, "stream=true is not supported by this server", param="stream")
        if req.model != self.cfg.served_model_name and req.model not in self.adapters:
            raise HttpError(404, f"The model `{req.model}` does not exist.", "not_found_error", "model")
        messages = [{"role": m.role, "content": m.content} for m in req.messages]
        ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)["input_ids"]
        context = self.context
        asked = req.max_completion_tokens or req.max_tokens
        if len(ids) + (asked or 1) > context:
            raise HttpError(
                400,
                f"This model's maximum context length is {context} tokens. However, you requested {len(ids) + (asked or 1)} tokens "
                f"({len(ids)} in the messages, {asked or 1} in the completion). Please reduce the length of the messages or completion.",
                param="messages", code="context_length_exceeded",
            )
        max_new = asked or min(256, context - len(ids))
        stops = [req.stop] if isinstance(req.stop, str) else list(req.stop or [])
        work = GenRequest(
            model=BASE if req.model == self.cfg.served_model_name else req.model, prompt=ids, max_new=max_new, n=req.n,
            sampling=Sampling(req.temperature, req.top_p, req.top_k, req.min_p, req.seed), stops=stops,
            top_logprobs=req.top_logprobs or 0, want_logprobs=req.logprobs, ignore_eos=req.ignore_eos,
        )
        self.generate(work)
        if isinstance(work.error, LookupError):
            raise HttpError(404, f"The model `{req.model}` does not exist.", "not_found_error", "model")
        if work.error is not None:
            raise work.error
        return self._response(req, work, stops)

    def _response(self, req: ChatRequest, work: GenRequest, stops: list[str]) -> dict:
        choices, completion_tokens = [], 0
        for c in work.choices:
            kept = c.tokens if req.ignore_eos else [t for t in c.tokens if t not in self.eos]
            finish = c.finish
            text = self.tokenizer.decode(kept, skip_special_tokens=True)
            for s in stops:
                cut = text.find(s)
                if cut >= 0:
                    text, finish = text[:cut], "stop"
            completion_tokens += len(c.tokens)
            choice = {"index": c.index, "message": {"role": "assistant", "content": text}, "finish_reason": finish, "logprobs": None}
            if req.logprobs:
                content = []
                for e in c.logprobs[: len(kept)]:
                    as_id = req.return_tokens_as_token_ids
                    entry = self._token_entry(e["id"], e["logprob"], as_id)
                    entry["top_logprobs"] = [self._token_entry(j, v, as_id) for j, v in e.get("top", [])]
                    content.append(entry)
                choice["logprobs"] = {"content": content}
            choices.append(choice)
        prompt = len(work.prompt)
        done = time.perf_counter()
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()), "model": req.model,
            "choices": choices,
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion_tokens, "total_tokens": prompt + completion_tokens,
                      "prompt_tokens_details": {"cached_tokens": work.cached_tokens}},
            # Not in OpenAI's schema (clients ignore it): where the time went, for benchmarks and the logs.
            "timing": {"queued_s": work.admitted - work.arrived, "time_to_first_token_s": work.first_token - work.arrived,
                       "total_s": done - work.arrived},
        }


class ModelHost(Host):
    """The PyTorch runtime: owns the model and the scheduler. `chat` runs in HTTP threads; adapter changes run
    in the model thread."""

    def __init__(self, cfg: ServeConfig):
        self.cfg = cfg
        self.device = pick_device(cfg.device)
        model_dir = resolve_model_dir(cfg.model)
        self.tokenizer = load_tokenizer(model_dir)
        self.model = load_causal_lm(model_dir, self.device, pick_dtype(cfg.dtype, self.device)).eval()
        self.adapters: dict[str, str] = {}
        self.created = int(time.time())
        self.forward = RaggedForward(self.model)
        self.context = self.forward.context
        self.eos = eos_ids(self.model.generation_config, self.tokenizer)
        self.scheduler = Scheduler(
            self.forward, self.tokenizer, self.eos, max_queue=cfg.max_queue, max_running=cfg.max_running,
            max_step_tokens=cfg.max_step_tokens, prefix_cache_bytes=cfg.prefix_cache_mb << 20, adapters=self.adapters,
        )
        for name, path in cfg.adapters.items():
            self.load_adapter(LoadAdapter(lora_name=name, lora_path=path))

    def start(self) -> None:
        threading.Thread(target=self.scheduler.loop, daemon=True).start()

    def stop(self) -> None:
        self.scheduler.stop()

    def stats(self) -> dict:
        return self.scheduler.stats()

    def run_control(self, job: Job) -> None:
        self.scheduler.run_control(job)

    # ---------------------------------------------------------------- adapters

    def load_adapter(self, req: LoadAdapter) -> str:
        from peft import PeftModel

        self.check_new_adapter(req)
        try:
            if not self.adapters and not isinstance(self.model, PeftModel):
                self.model = PeftModel.from_pretrained(self.model, req.lora_path, adapter_name=req.lora_name).eval()
            else:
                self.model.load_adapter(req.lora_path, adapter_name=req.lora_name)
        except (OSError, ValueError) as e:
            raise HttpError(400, f"cannot load LoRA adapter from {req.lora_path}: {e}", param="lora_path") from e
        self.adapters[req.lora_name] = req.lora_path
        self.forward.set_model(self.model)
        return f"Success: LoRA adapter '{req.lora_name}' added successfully."

    def unload_adapter(self, req: UnloadAdapter) -> str:
        self.check_loaded_adapter(req)
        self.model.delete_adapter(req.lora_name)
        del self.adapters[req.lora_name]
        self.scheduler.cache.drop_model(req.lora_name)
        return f"Success: LoRA adapter '{req.lora_name}' removed successfully."

    # ---------------------------------------------------------------- generation

    def generate(self, work: GenRequest) -> None:
        try:
            self.scheduler.submit(work)
        except QueueFull:
            raise HttpError(503, "the request queue is full; retry later", "server_busy") from None
        work.done.wait()


def eos_ids(generation_config, tokenizer) -> set[int]:
    configured = generation_config.eos_token_id
    ids = set(configured if isinstance(configured, list) else [configured] if configured is not None else [])
    return ids | {tokenizer.eos_token_id}


class Job:
    """An adapter change, run by the model thread between steps."""

    def __init__(self, fn, arg):
        self.fn, self.arg = fn, arg
        self.done = threading.Event()
        self.result = None
        self.error: Exception | None = None

    def run(self) -> None:
        try:
            self.result = self.fn(self.arg)
        except Exception as e:  # reported to the waiting request, the server keeps serving
            self.error = e
        finally:
            self.done.set()


def in_model_thread(host: Host, fn):
    def run(req):
        job = Job(fn, req)
        host.run_control(job)
        job.done.wait()
        if job.error is not None:
            raise job.error
        return job.result

    return run


def make_handler(host: Host):
    routes_post = {
        "/v1/chat/completions": (ChatRequest, host.chat),
        "/v1/load_lora_adapter": (LoadAdapter, in_model_thread(host, host.load_adapter)),
        "/v1/unload_lora_adapter": (UnloadAdapter, in_model_thread(host, host.unload_adapter)),
    }

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):  # access log to stderr, one line per request
            sys.stderr.write(f"[serve] {self.address_string()} {fmt % args}\n")

        def _send(self, status: int, body) -> None:
            data = (json.dumps(body) if not isinstance(body, str) else body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json" if not isinstance(body, str) else "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _error(self, e: HttpError) -> None:
            self._send(e.status, {"error": {"message": e.message, "type": e.kind, "param": e.param, "code": e.code}})

        def do_GET(self):
            if self.path == "/health":
                self._send(200, {"status": "ok"})
            elif self.path == "/v1/models":
                self._send(200, host.models())
            elif self.path == "/stats":
                self._send(200, host.stats())
            else:
                self._error(HttpError(404, f"no route GET {self.path}", "not_found_error"))

        def do_POST(self):
            route = routes_post.get(self.path)
            if route is None:
                return self._error(HttpError(404, f"no route POST {self.path}", "not_found_error"))
            schema, fn = route
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                req = schema.model_validate(body)
            except json.JSONDecodeError as e:
                return self._error(HttpError(400, f"request body is not JSON: {e.msg}"))
            except ValidationError as e:
                first = e.errors()[0]
                return self._error(HttpError(400, f"invalid request:\n{describe_validation_error(e)}", param=".".join(map(str, first["loc"]))))
            try:
                result = fn(req)
            except HttpError as e:
                return self._error(e)
            except Exception as e:  # reported to this request, the server keeps serving
                return self._error(HttpError(500, f"{type(e).__name__}: {e}", "server_error"))
            self._send(200, result)

    return Handler


def serve(cfg: ServeConfig) -> None:
    if cfg.runtime == "llamacpp":
        from .llamacpp import LlamaCppHost

        host: Host = LlamaCppHost(cfg)
    else:
        host = ModelHost(cfg)
    host.start()
    httpd = ThreadingHTTPServer((cfg.host, cfg.port), make_handler(host))
    httpd.daemon_threads = True
    port = httpd.server_address[1]

    def stop(*_):
        threading.Thread(target=httpd.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    emit("listening", host=cfg.host, port=port, url=f"http://{cfg.host}:{port}/v1", model=cfg.served_model_name, adapters=list(host.adapters))
    httpd.serve_forever()
    host.stop()
    emit("stopped")
