"""OpenAI-compatible HTTP server for a base model plus LoRA adapters loaded and unloaded at run time.

Endpoints (request shapes follow OpenAI and vLLM, so the same client code talks to vLLM in production):
  POST /v1/chat/completions   model, messages, temperature, top_p, top_k, max_tokens, seed, stop, n,
                              logprobs, top_logprobs
  GET  /v1/models             the base model and every loaded adapter
  POST /v1/load_lora_adapter  {"lora_name", "lora_path"}
  POST /v1/unload_lora_adapter {"lora_name"}
  GET  /health

Requests are queued and run one at a time by a single model thread (CPU inference gains nothing from
concurrency, and adapter switches must not interleave with generation). A full queue answers 503.
Log-probs are the raw model distribution (before temperature/top-k/top-p), as vLLM reports by default.
On start the server prints {"event": "listening", "url": ...} on stdout.
"""

from __future__ import annotations

import json
import queue
import signal
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError

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
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    seed: int | None = None
    stop: str | list[str] | None = None
    n: int = Field(1, ge=1, le=16)
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=20)
    stream: bool = False


class LoadAdapter(BaseModel):
    model_config = ConfigDict(extra="ignore")
    lora_name: str = Field(min_length=1)
    lora_path: str = Field(min_length=1)


class UnloadAdapter(BaseModel):
    model_config = ConfigDict(extra="ignore")
    lora_name: str = Field(min_length=1)


class HttpError(Exception):
    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", param: str | None = None):
        super().__init__(message)
        self.status, self.message, self.kind, self.param = status, message, kind, param


class ModelHost:
    """Owns the model; only the model thread calls its methods."""

    def __init__(self, cfg: ServeConfig):
        self.cfg = cfg
        self.device = pick_device(cfg.device)
        model_dir = resolve_model_dir(cfg.model)
        self.tokenizer = load_tokenizer(model_dir)
        self.model = load_causal_lm(model_dir, self.device, pick_dtype(cfg.dtype, self.device)).eval()
        self.adapters: dict[str, str] = {}
        self.created = int(time.time())
        for name, path in cfg.adapters.items():
            self.load_adapter(LoadAdapter(lora_name=name, lora_path=path))

    # ---------------------------------------------------------------- adapters

    def load_adapter(self, req: LoadAdapter) -> str:
        from peft import PeftModel

        if req.lora_name == self.cfg.served_model_name or req.lora_name in self.adapters:
            raise HttpError(400, f"The lora adapter '{req.lora_name}' has already been loaded.", param="lora_name")
        try:
            if not self.adapters and not isinstance(self.model, PeftModel):
                self.model = PeftModel.from_pretrained(self.model, req.lora_path, adapter_name=req.lora_name).eval()
            else:
                self.model.load_adapter(req.lora_path, adapter_name=req.lora_name)
        except (OSError, ValueError) as e:
            raise HttpError(400, f"cannot load LoRA adapter from {req.lora_path}: {e}", param="lora_path") from e
        self.adapters[req.lora_name] = req.lora_path
        return f"Success: LoRA adapter '{req.lora_name}' added successfully."

    def unload_adapter(self, req: UnloadAdapter) -> str:
        if req.lora_name not in self.adapters:
            raise HttpError(404, f"The lora adapter '{req.lora_name}' cannot be found.", "not_found_error", "lora_name")
        self.model.delete_adapter(req.lora_name)
        del self.adapters[req.lora_name]
        return f"Success: LoRA adapter '{req.lora_name}' removed successfully."

    def models(self) -> dict:
        base = self.cfg.served_model_name
        data = [{"id": base, "object": "model", "created": self.created, "owned_by": "entropo", "root": self.cfg.model, "parent": None}]
        data += [{"id": n, "object": "model", "created": self.created, "owned_by": "entropo", "root": p, "parent": base} for n, p in self.adapters.items()]
        return {"object": "list", "data": data}

    # ---------------------------------------------------------------- generation

    def _eos_ids(self) -> set[int]:
        configured = self.model.generation_config.eos_token_id
        ids = set(configured if isinstance(configured, list) else [configured] if configured is not None else [])
        return ids | {self.tokenizer.eos_token_id}

    def _token_entry(self, token_id: int, logprob: float) -> dict:
        text = self.tokenizer.decode([token_id])
        return {"token": text, "logprob": logprob, "bytes": list(text.encode("utf-8"))}

    def chat(self, req: ChatRequest) -> dict:
        if req.stream:
            raise HttpError(400, "stream=true is not supported by this server", param="stream")
        if req.model != self.cfg.served_model_name and req.model not in self.adapters:
            raise HttpError(404, f"The model `{req.model}` does not exist.", "not_found_error", "model")
        messages = [{"role": m.role, "content": m.content} for m in req.messages]
        ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True, return_tensors="pt")["input_ids"].to(self.device)
        stops = [req.stop] if isinstance(req.stop, str) else list(req.stop or [])
        max_new = req.max_completion_tokens or req.max_tokens or 256
        sample = req.temperature > 0
        kwargs = dict(
            max_new_tokens=max_new, do_sample=sample, num_return_sequences=req.n, output_logits=True,
            return_dict_in_generate=True, pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id,
        )
        if sample:
            kwargs |= dict(temperature=req.temperature, top_p=req.top_p, top_k=req.top_k if req.top_k > 0 else None)
        else:
            kwargs |= dict(temperature=None, top_p=None, top_k=None)
        if stops:
            kwargs |= dict(stop_strings=stops, tokenizer=self.tokenizer)
        if req.seed is not None:
            torch.manual_seed(req.seed)
        with torch.no_grad():
            if req.model in self.adapters:
                self.model.set_adapter(req.model)
                out = self.model.generate(input_ids=ids, **kwargs)
            elif self.adapters:
                with self.model.disable_adapter():
                    out = self.model.generate(input_ids=ids, **kwargs)
            else:
                out = self.model.generate(input_ids=ids, **kwargs)
        prompt_len = ids.shape[1]
        step_logprobs = torch.log_softmax(torch.stack(out.logits, dim=1).float(), dim=-1)  # (n, steps, vocab)
        eos = self._eos_ids()
        choices, completion_tokens = [], 0
        for i in range(req.n):
            new = out.sequences[i, prompt_len:].tolist()
            finish, kept = "length", []
            for t in new:
                if t in eos:
                    finish = "stop"
                    break
                kept.append(t)
            text = self.tokenizer.decode(kept, skip_special_tokens=True)
            for s in stops:
                cut = text.find(s)
                if cut >= 0:
                    text, finish = text[:cut], "stop"
            completion_tokens += len(kept) + (1 if finish == "stop" and len(kept) < len(new) else 0)
            choice = {"index": i, "message": {"role": "assistant", "content": text}, "finish_reason": finish, "logprobs": None}
            if req.logprobs:
                content = []
                for step, t in enumerate(kept):
                    entry = self._token_entry(t, float(step_logprobs[i, step, t]))
                    k = req.top_logprobs or 0
                    if k:
                        values, indices = step_logprobs[i, step].topk(k)
                        entry["top_logprobs"] = [self._token_entry(int(j), float(v)) for v, j in zip(values, indices)]
                    else:
                        entry["top_logprobs"] = []
                    content.append(entry)
                choice["logprobs"] = {"content": content}
            choices.append(choice)
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()), "model": req.model,
            "choices": choices,
            "usage": {"prompt_tokens": prompt_len, "completion_tokens": completion_tokens, "total_tokens": prompt_len + completion_tokens},
        }


class Job:
    def __init__(self, fn, arg):
        self.fn, self.arg = fn, arg
        self.done = threading.Event()
        self.result = None
        self.error: Exception | None = None


def model_thread(jobs: queue.Queue) -> None:
    while True:
        job = jobs.get()
        if job is None:
            return
        try:
            job.result = job.fn(job.arg)
        except Exception as e:  # reported to the waiting request, the server keeps serving
            job.error = e
        finally:
            job.done.set()


def make_handler(host: ModelHost, jobs: queue.Queue):
    routes_post = {
        "/v1/chat/completions": (ChatRequest, host.chat),
        "/v1/load_lora_adapter": (LoadAdapter, host.load_adapter),
        "/v1/unload_lora_adapter": (UnloadAdapter, host.unload_adapter),
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
            self._send(e.status, {"error": {"message": e.message, "type": e.kind, "param": e.param, "code": e.status}})

        def do_GET(self):
            if self.path == "/health":
                self._send(200, {"status": "ok"})
            elif self.path == "/v1/models":
                self._send(200, host.models())
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
            job = Job(fn, req)
            try:
                jobs.put_nowait(job)
            except queue.Full:
                return self._error(HttpError(503, "the request queue is full; retry later", "server_busy"))
            job.done.wait()
            if isinstance(job.error, HttpError):
                return self._error(job.error)
            if job.error is not None:
                return self._error(HttpError(500, f"{type(job.error).__name__}: {job.error}", "server_error"))
            self._send(200, job.result)

    return Handler


def serve(cfg: ServeConfig) -> None:
    host = ModelHost(cfg)
    jobs: queue.Queue = queue.Queue(maxsize=cfg.max_queue)
    worker = threading.Thread(target=model_thread, args=(jobs,), daemon=True)
    worker.start()
    httpd = ThreadingHTTPServer((cfg.host, cfg.port), make_handler(host, jobs))
    httpd.daemon_threads = True
    port = httpd.server_address[1]

    def stop(*_):
        threading.Thread(target=httpd.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    emit("listening", host=cfg.host, port=port, url=f"http://{cfg.host}:{port}/v1", model=cfg.served_model_name, adapters=list(host.adapters))
    httpd.serve_forever()
    jobs.put(None)
    emit("stopped")
