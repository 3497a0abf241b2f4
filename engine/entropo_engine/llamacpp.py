"""The llama.cpp runtime (ServeConfig.runtime = "llamacpp"): llama.cpp's `llama-server` generates, behind the
same OpenAI front as the PyTorch runtime (server.py: request checks, chat template, response, errors).

Why: on 2 CPU cores it decodes one request ~5x faster than our PyTorch runtime, and 8 long conversations 1.3x
(BENCHMARKS.md, "Engine inference: the two runtimes"), with continuous batching and per-slot prefix reuse.

What this file adds around it:
  - the binary: built once by infra/build-llama-cpp.sh from the llama.cpp sources in the MIT sdist
    `llama-cpp-python` (PyPI) and linked into the venv as `<venv>/llama.cpp` (or $ENTROPO_LLAMA_CPP);
  - the weights: the same GGUF the engine de-quantises, re-written once as F16 (F32 for dtype float32,
    BF16 for bfloat16) by `llama-quantize`, cached under $ENTROPO_HOME/models;
  - prompts go in as token ids from our tokenizer's chat template, so both runtimes see the same tokens;
  - adapters: a PEFT adapter is converted to GGUF (`convert_adapter`, also `entropo-engine convert-adapter`)
    and llama-server is restarted with every loaded adapter (it cannot load one at run time); the adapter
    is chosen per request by model name. A restart waits for the requests in flight, as the PyTorch
    runtime's adapter changes do;
  - the queue limit (503), a supervisor that restarts llama-server if it dies, and `/stats`.
llama-server runs under `setpriv --pdeathsig KILL` started from one long-lived control thread, so it never
outlives this process.
"""

from __future__ import annotations

import collections
import hashlib
import http.client
import json
import os
import queue
import random
import shutil
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .batching import BASE, Choice, GenRequest
from .config import DEFAULT_MODEL, ServeConfig
from .errors import InvalidInputError
from .models import bundled_smollm2_gguf, entropo_home, load_tokenizer, resolve_model_dir
from .server import Host, HttpError, Job, LoadAdapter, UnloadAdapter, eos_ids
from .slots import SlotTable

GGUF_TYPE = {"auto": "F16", "float32": "F32", "bfloat16": "BF16"}
# llama.cpp's samplers beyond ours, turned off: the OpenAI/vLLM fields we accept have no counterpart for them.
SAMPLERS_OFF = {"repeat_penalty": 1.0, "presence_penalty": 0.0, "frequency_penalty": 0.0, "dry_multiplier": 0.0,
                "typical_p": 1.0, "xtc_probability": 0.0, "top_n_sigma": -1.0, "mirostat": 0}


def runtime_dir() -> Path:
    return Path(os.environ.get("ENTROPO_LLAMA_CPP") or Path(sys.prefix) / "llama.cpp")


def runtime_file(*parts: str) -> Path:
    path = runtime_dir().joinpath(*parts)
    if not path.exists():
        raise InvalidInputError(
            f"runtime llamacpp: {path} not found. `bash infra/setup.sh` builds llama.cpp once (5-8 minutes on 2 cores) "
            f"and links it into the venv; or set ENTROPO_LLAMA_CPP to a directory built by infra/build-llama-cpp.sh"
        )
    return path


def _digest(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def _run(argv: list, what: str) -> None:
    done = subprocess.run([str(a) for a in argv], capture_output=True, text=True)
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-15:])
        raise InvalidInputError(f"{what} failed (exit {done.returncode}):\n{tail}")


def served_gguf(spec: str, dtype: str, model_dir: Path) -> Path:
    """The GGUF llama-server loads: the model's GGUF re-written once in the served precision, beside the
    model directory `resolve_model_dir` made from it (whose name already carries the GGUF's digest)."""
    source = bundled_smollm2_gguf() if spec == DEFAULT_MODEL else Path(spec)
    if source.suffix != ".gguf":
        raise InvalidInputError(f"model '{spec}': runtime llamacpp serves GGUF models (the default model or a .gguf path); use runtime torch")
    kind = GGUF_TYPE[dtype]
    target = model_dir.with_name(f"{model_dir.name}.{kind}.gguf")
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
        _run([runtime_file("bin", "llama-quantize"), "--allow-requantize", source, tmp, kind], f"writing {kind} weights for {source.name}")
        tmp.rename(target)  # atomic: a half-written file is never loaded
    return target


def convert_adapter(adapter_dir: str | Path, model: str = DEFAULT_MODEL) -> Path:
    """A PEFT LoRA adapter as a GGUF llama-server loads (llama.cpp's convert_lora_to_gguf.py, f32), cached
    under $ENTROPO_HOME/adapters by the adapter's content."""
    adapter_dir = Path(adapter_dir)
    files = [adapter_dir / "adapter_config.json", adapter_dir / "adapter_model.safetensors"]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise InvalidInputError(f"{adapter_dir}: not a PEFT LoRA adapter directory (missing {', '.join(missing)})")
    target = entropo_home() / "adapters" / f"{_digest(files)}.gguf"
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
        _run([sys.executable, runtime_file("convert_lora_to_gguf.py"), "--base", resolve_model_dir(model), "--outtype", "f32",
              "--outfile", tmp, adapter_dir], f"converting the adapter {adapter_dir} to GGUF")
        tmp.rename(target)
    return target


def llama_server_env() -> dict[str, str]:
    """Our environment without OMP_WAIT_POLICY: `serve` sets it PASSIVE for the torch runtime, and llama-server's
    OpenMP threads then sleep at every barrier (measured, threads 2: one request decoded at 33 tok/s, not 110)."""
    return {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def completion_body(work: GenRequest, index: int, lora: list[dict], slot: int) -> dict:
    """llama-server's /completion request for one of a request's `n` choices. Sampling follows our order
    (temperature, top-k, top-p, min-p); log-probs are the raw distribution (post_sampling_probs off), as
    the PyTorch runtime and vLLM report them. A seeded request's choice i uses seed + i. `slot`: the one the
    front chose (slots.py)."""
    s = work.sampling
    seed = (s.seed + index) % (1 << 32) if s.seed is not None else random.getrandbits(32)
    return {
        "prompt": work.prompt, "n_predict": work.max_new, "cache_prompt": True, "return_tokens": True,
        "temperature": s.temperature, "top_k": max(s.top_k, 0), "top_p": s.top_p, "min_p": s.min_p,
        "samplers": ["temperature", "top_k", "top_p", "min_p"], "seed": seed, **SAMPLERS_OFF,
        "n_probs": max(work.top_logprobs, 1) if work.want_logprobs else 0, "post_sampling_probs": False,
        "stop": work.stops, "ignore_eos": work.ignore_eos, "lora": lora, "id_slot": slot,
    }


FINISH = {"eos": "stop", "word": "stop", "limit": "length"}


def read_choice(work: GenRequest, index: int, result: dict, eos: set[int]) -> Choice:
    """One /completion result as the Choice the PyTorch runtime would have produced."""
    choice = Choice(req=work, index=index, gen=None, finish=FINISH.get(result.get("stop_type"), "stop"))
    choice.tokens = list(result.get("tokens") or [])
    for e in result.get("completion_probabilities") or []:
        top = [(t["id"], t["logprob"]) for t in e.get("top_logprobs", [])[: work.top_logprobs]]
        choice.logprobs.append({"id": e["id"], "logprob": e["logprob"], "top": top})
    if result.get("stop_type") == "eos" and (not choice.tokens or choice.tokens[-1] not in eos):
        choice.tokens.append(min(eos))  # llama.cpp leaves the end-of-sequence token out; we count it
    return choice


class LlamaCppHost(Host):
    def __init__(self, cfg: ServeConfig):
        from transformers import AutoConfig, GenerationConfig

        if cfg.device == "cuda":
            raise InvalidInputError("runtime llamacpp is built for the CPU; use runtime torch on a GPU")
        self.cfg = cfg
        self.model_dir = resolve_model_dir(cfg.model)
        self.tokenizer = load_tokenizer(self.model_dir)
        self.context = AutoConfig.from_pretrained(self.model_dir).max_position_embeddings
        self.eos = eos_ids(GenerationConfig.from_pretrained(self.model_dir), self.tokenizer)
        self.binary = runtime_file("bin", "llama-server")
        self.gguf = served_gguf(cfg.model, cfg.dtype, self.model_dir)
        self.created = int(time.time())
        self.adapters: dict[str, str] = {}
        self.adapter_files: dict[str, Path] = {}
        for name, path in cfg.adapters.items():
            self.check_new_adapter(LoadAdapter(lora_name=name, lora_path=path))
            self.adapter_files[name], self.adapters[name] = convert_adapter(path, cfg.model), path
        # More running sequences than slots wait here for a slot (slots.py chooses which).
        self.slots = max(1, min(cfg.max_running, cfg.kv_cache_tokens // self.context))
        self.slot_table = SlotTable(self.slots)
        self.lock = threading.Condition()
        self.outstanding = 0  # sequences sent to llama-server, or on their way
        self.paused = False  # a restart is waiting for the requests in flight, or running
        self.lora_ids: dict[str, int] = {}
        self.child: subprocess.Popen | None = None
        self.port = 0
        self.stopping = False
        self.log_tail: collections.deque[str] = collections.deque(maxlen=40)
        self.jobs: queue.Queue[Job | None] = queue.Queue()
        self.counters = {"requests": 0, "prompt_tokens": 0, "cached_tokens": 0, "completion_tokens": 0, "restarts": 0}

    # ---------------------------------------------------------------- the llama-server process

    def start(self) -> None:
        threading.Thread(target=self._control_loop, daemon=True, name="llamacpp-control").start()
        job = Job(lambda _: self._restart(), None)
        self.run_control(job)
        job.done.wait()
        if job.error is not None:
            raise RuntimeError(f"runtime llamacpp: {job.error}")  # not the config's fault: worth a retry

    def stop(self) -> None:
        self.stopping = True
        self.jobs.put(None)
        self._kill_child()

    def run_control(self, job: Job) -> None:
        self.jobs.put(job)

    def _control_loop(self) -> None:
        """The one thread that starts llama-server (the parent-death signal follows the starting thread)."""
        while True:
            try:
                job = self.jobs.get(timeout=1.0)
            except queue.Empty:
                if self.child is not None and self.child.poll() is not None and not self.stopping:
                    print(f"[llamacpp] llama-server exited with code {self.child.returncode}; restarting it", file=sys.stderr)
                    try:
                        self._restart()
                    except Exception as e:  # keep trying: the requests meanwhile answer 503
                        print(f"[llamacpp] restart failed: {e}", file=sys.stderr)
                continue
            if job is None:
                return
            job.run()

    def _argv(self) -> list[str]:
        cfg = self.cfg
        # One slot per running sequence, each with its own KV cache of the model's full context, so any request
        # the front admits fits. Not llama.cpp's unified cache: there every sequence attends over the whole
        # shared cache (measured at 8 conversations x 10 turns: 63 tok/s unified, 91 per slot, -t 2).
        argv = [str(self.binary), "-m", str(self.gguf), "--host", "127.0.0.1", "--port", str(self.port),
                "--parallel", str(self.slots), "--no-kv-unified", "-c", str(self.slots * self.context),
                "--threads", str(cfg.threads), "--threads-batch", str(cfg.threads), "--no-webui", "--alias", cfg.served_model_name]
        # Prefix reuse: each slot keeps its last conversation; the host-memory prompt cache
        # (--cache-ram) keeps more, but it ignores adapters (measured: an adapter's request was served from the
        # base model's cached prompt, 3.3 nats off), so it is on only while no adapter is loaded.
        argv += ["--cache-ram", str(cfg.prefix_cache_mb if not self.adapter_files else 0)]
        if cfg.dtype == "float32":  # the exact path: f32 KV cache and no flash attention (its f16 accumulators)
            argv += ["--cache-type-k", "f32", "--cache-type-v", "f32", "--flash-attn", "off"]
        for f in self.adapter_files.values():
            argv += ["--lora", str(f)]
        if self.adapter_files:
            argv.append("--lora-init-without-apply")  # requests set every adapter's scale (generate)
        setpriv = shutil.which("setpriv")
        return ([setpriv, "--pdeathsig", "KILL", "--"] if setpriv else []) + argv

    def _restart(self) -> None:
        """(Re)starts llama-server with the current adapters, once the requests in flight have finished."""
        with self.lock:
            self.paused = True
            while self.outstanding:
                self.lock.wait()
        try:
            for attempt in range(3):  # a free port can be taken between choosing it and llama-server binding it
                self._kill_child()
                self.port = _free_port()
                self.child = subprocess.Popen(self._argv(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
                                              env=llama_server_env())
                threading.Thread(target=self._forward_log, args=(self.child,), daemon=True).start()
                try:
                    self._wait_healthy()
                    break
                except RuntimeError:
                    if attempt == 2:
                        raise
            self.lora_ids = {name: i for i, name in enumerate(self.adapter_files)}
            with self.lock:
                self.slot_table.clear()
            self.counters["restarts"] += 1
        finally:
            with self.lock:
                self.paused = False
                self.lock.notify_all()

    def _forward_log(self, child: subprocess.Popen) -> None:
        # llama-server's log goes to our stderr (stdout carries this process's JSON events), the tail kept for errors.
        for line in child.stdout:
            self.log_tail.append(line.rstrip())
            sys.stderr.write(f"[llama-server] {line}")

    def _wait_healthy(self) -> None:
        while True:
            if self.child.poll() is not None:
                tail = "\n".join(self.log_tail)
                raise RuntimeError(f"llama-server exited with code {self.child.returncode} while starting:\n{tail}")
            try:
                status, _ = self._request("GET", "/health", None)
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)

    def _kill_child(self) -> None:
        child, self.child = self.child, None
        if child is not None and child.poll() is None:
            child.terminate()
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()

    def _request(self, method: str, path: str, body: dict | None) -> tuple[int, dict]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port)
        try:
            conn.request(method, path, body=None if body is None else json.dumps(body), headers={"Content-Type": "application/json"})
            r = conn.getresponse()
            data = r.read()
            return r.status, json.loads(data) if data else {}
        finally:
            conn.close()

    # ---------------------------------------------------------------- adapters (run in the control thread)

    def load_adapter(self, req: LoadAdapter) -> str:
        self.check_new_adapter(req)
        try:
            converted = convert_adapter(req.lora_path, self.cfg.model)
        except InvalidInputError as e:
            raise HttpError(400, f"cannot load LoRA adapter from {req.lora_path}: {e}", param="lora_path") from e
        self.adapter_files[req.lora_name], self.adapters[req.lora_name] = converted, req.lora_path
        try:
            self._restart()
        except Exception:
            del self.adapter_files[req.lora_name], self.adapters[req.lora_name]
            self._restart()
            raise
        return f"Success: LoRA adapter '{req.lora_name}' added successfully."

    def unload_adapter(self, req: UnloadAdapter) -> str:
        self.check_loaded_adapter(req)
        del self.adapter_files[req.lora_name], self.adapters[req.lora_name]
        self._restart()
        return f"Success: LoRA adapter '{req.lora_name}' removed successfully."

    # ---------------------------------------------------------------- generation (HTTP threads)

    def generate(self, work: GenRequest) -> None:
        cfg = self.cfg
        with self.lock:
            while self.paused:
                self.lock.wait()
            # The same bound as the PyTorch runtime: max_running sequences generating, max_queue more waiting.
            if self.outstanding + work.n > cfg.max_running + cfg.max_queue:
                raise HttpError(503, "the request queue is full; retry later", "server_busy")
            if work.model != BASE and work.model not in self.lora_ids:
                work.error = LookupError(work.model)  # unloaded since the request was checked
                return
            # Every adapter named with its scale: llama-server applies an adapter left out of the list (measured:
            # `"lora": []` served a loaded adapter's output for the base model).
            lora = [{"id": i, "scale": 1.0 if name == work.model else 0.0} for name, i in self.lora_ids.items()]
            self.outstanding += work.n
        try:
            with ThreadPoolExecutor(work.n) as pool:
                results = list(pool.map(lambda i: self._complete(work, i, lora), range(work.n)))
        finally:
            with self.lock:
                self.outstanding -= work.n
                self.lock.notify_all()
        done = time.perf_counter()
        work.choices = [read_choice(work, i, r, self.eos) for i, r in enumerate(results)]
        timings = results[0].get("timings", {})
        work.cached_tokens = int(timings.get("cache_n", 0))
        # llama-server reports its own prompt and decode times; the rest of the wall time was waiting.
        work.first_token = done - timings.get("predicted_ms", 0) / 1000
        work.admitted = max(work.arrived, work.first_token - timings.get("prompt_ms", 0) / 1000)
        with self.lock:
            self.counters["requests"] += 1
            self.counters["prompt_tokens"] += len(work.prompt) * work.n
            self.counters["cached_tokens"] += sum(int(r.get("timings", {}).get("cache_n", 0)) for r in results)
            self.counters["completion_tokens"] += sum(len(c.tokens) for c in work.choices)

    def _complete(self, work: GenRequest, index: int, lora: list[dict]) -> dict:
        with self.lock:
            while (slot := self.slot_table.choose(work.model, work.prompt)) is None:
                self.lock.wait()
        cached = None
        try:
            status, body = self._request("POST", "/completion", completion_body(work, index, lora, slot))
            if status == 200:
                cached = work.prompt + list(body.get("tokens") or [])
        except OSError as e:  # llama-server died mid-request; the control thread restarts it
            raise HttpError(503, f"the model runtime restarted ({e}); retry", "server_busy") from e
        finally:
            with self.lock:
                self.slot_table.release(slot, work.model, cached)
                self.lock.notify_all()
        if status != 200:
            message = body.get("error", {}).get("message", str(body)) if isinstance(body, dict) else str(body)
            raise HttpError(status if status < 500 else 500, f"llama-server: {message}", "server_error" if status >= 500 else "invalid_request_error")
        return body

    def stats(self) -> dict:
        with self.lock:
            return {"runtime": "llamacpp", "slots": self.slots, "outstanding": self.outstanding, **self.counters}
