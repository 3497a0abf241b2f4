"""The exec server: one long-lived process inside a sandbox that runs its commands on request.

A new sandbox process per command (a bwrap namespace and cgroup join, or a `docker exec`) costs 8-115 ms;
an agent runs hundreds of commands per episode. This process is started once per sandbox, inside it (by
`activities/execServer.ts`), and forks each command itself. Standard library only: it runs on the
sandbox's own Python (the project venv's in bwrap, the image's `python3` in docker).

Protocol, over its stdin and stdout (no network: containers have none):
  request  (one line of JSON on stdin):  {"argv": [...], "stdin": "<base64>"}
  while a command runs, the line `kill` on stdin kills it
  frames on stdout: one byte of kind, four bytes of big-endian length, the payload:
    r  ready, once at start: {"pid": <its pid>}
    o  bytes of the command's stdout        e  bytes of its stderr
    x  the command ended: {"code": <exit status, 128+N when killed by signal N>}

One command at a time. When a command's process ends, every other process in the sandbox except those
present when this server started (the namespace's init, the container's main process, this server) is
killed, as the sandbox's pid namespace ending did before: nothing a command leaves in the background
outlives it, and a timeout (`kill`) takes setsid'd and double-forked children too. The kill needs no fork,
so it works when a fork bomb holds every pid. At the memory limit the kernel kills the largest process,
the command's; were it ever this server, its sandbox's processes die with it, the command reads as
killed and the next command starts a new server.
"""

import base64
import errno
import json
import os
import select
import signal
import struct
import subprocess
import sys
import time

CHUNK = 65536
PROTECTED = set()
COMMAND_ENV = {}
# What the worker has written on stdin and this server has not acted on yet: requests and `kill` lines.
CONTROL = bytearray()
# Every command's environment names its server, so that a server can find what an earlier one, killed
# while a command ran (docker: the container lives on), left behind.
MARK = b"ENTROPO_EXEC_SERVER="


def write_all(data):
    view = memoryview(data)
    while view:
        try:
            n = os.write(1, view)
        except InterruptedError:
            continue
        view = view[n:]


def frame(kind, payload):
    write_all(kind + struct.pack(">I", len(payload)) + payload)


def is_zombie(pid):
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            stat = f.read()
    except OSError:
        return True
    return stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3] == b"Z"


def other_processes():
    """Pids of the sandbox's processes that are not protected and still alive (zombies are dead)."""
    pids = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            pid = int(name)
            if pid not in PROTECTED and not is_zombie(pid):
                pids.append(pid)
    return pids


def sweep():
    """Kills every unprotected process: stop them all, kill them all, until none is left (500 rounds at most;
    what survives them is the worker's to end, by destroying the server)."""
    for _ in range(500):
        victims = other_processes()
        if not victims:
            return
        for sig in (signal.SIGSTOP, signal.SIGKILL):
            for pid in victims:
                try:
                    os.kill(pid, sig)
                except OSError as e:
                    if e.errno == errno.EPERM:
                        PROTECTED.add(pid)  # not ours to kill (another user's process)
        time.sleep(0.001)


def left_by_earlier_servers():
    """Processes whose environment says an exec server started them (readable where they are ours)."""
    pids = []
    for pid in other_processes():
        try:
            with open("/proc/%d/environ" % pid, "rb") as f:
                if any(v.startswith(MARK) for v in f.read().split(b"\0")):
                    pids.append(pid)
        except OSError:
            pass
    return pids


def start_command(argv):
    # No preexec_fn: with one, the child is forked rather than vforked, which cost 1.6 ms per command.
    return subprocess.Popen(
        argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        close_fds=True,
        env=COMMAND_ENV,
    )


def read_control(control):
    """Appends what the worker wrote to CONTROL; False when it closed its end (the worker is gone)."""
    chunk = os.read(control, CHUNK)
    CONTROL.extend(chunk)
    return bool(chunk)


def take_kills():
    """Consumes the `kill` lines at the head of CONTROL (up to the next request); True if there was one."""
    found = False
    while True:
        end = CONTROL.find(b"\n")
        if end < 0 or CONTROL.startswith(b"{"):
            return found
        found = found or CONTROL[:end].strip() == b"kill"
        del CONTROL[: end + 1]


def run(request, control, wake):
    """Runs one command, streaming its output, until it and everything it started are gone."""
    data = base64.b64decode(request.get("stdin") or "")
    proc = start_command(request["argv"])
    os.set_blocking(proc.stdin.fileno(), False)
    pending_in = memoryview(data)
    stdin_fd = proc.stdin.fileno()
    if not pending_in:
        proc.stdin.close()
        stdin_fd = None
    outputs = {proc.stdout.fileno(): b"o", proc.stderr.fileno(): b"e"}
    code = None
    drained_at = None
    if take_kills():  # sent right behind the request (its signal had already aborted)
        sweep()
    while outputs or code is None:
        readable = list(outputs) + [control, wake]
        writable = [stdin_fd] if stdin_fd is not None else []
        timeout = None
        if code is not None:
            # Everything that could write is dead; a writer we may not kill must not hold us forever.
            drained_at = drained_at or time.monotonic()
            timeout = max(0.0, 2.0 - (time.monotonic() - drained_at))
            if timeout == 0.0:
                break
        try:
            r, w, _ = select.select(readable, writable, [], timeout)
        except InterruptedError:
            continue
        if wake in r:
            try:
                os.read(wake, 4096)
            except BlockingIOError:
                pass
        if control in r:
            if not read_control(control):
                sweep()
                sys.exit(0)  # the worker is gone
            if take_kills():
                sweep()
        if w:
            try:
                n = os.write(stdin_fd, pending_in[:CHUNK])
                pending_in = pending_in[n:]
            except BlockingIOError:
                pass
            except BrokenPipeError:
                pending_in = memoryview(b"")
            if not pending_in:
                proc.stdin.close()
                stdin_fd = None
        for fd in [fd for fd in r if fd in outputs]:
            chunk = os.read(fd, CHUNK)
            if chunk:
                frame(outputs[fd], chunk)
            else:
                del outputs[fd]
        if code is None:
            status = proc.poll()
            if status is not None:
                code = status if status >= 0 else 128 - status
                sweep()
                if stdin_fd is not None:
                    proc.stdin.close()
                    stdin_fd = None
    for stream in (proc.stdout, proc.stderr):
        stream.close()
    frame(b"x", json.dumps({"code": code}).encode())


def main():
    # The sweep kills every process that was not there at start: only ever inside a sandbox's own pid
    # namespace, where this server's parent is the namespace's init (bwrap) or outside it (docker exec).
    if os.getppid() not in (0, 1):
        sys.stderr.write("execServer.py runs only as a sandbox's exec server (its parent is pid 0 or 1)\n")
        sys.exit(2)
    PROTECTED.add(os.getpid())
    PROTECTED.update(set(other_processes()) - set(left_by_earlier_servers()))
    sweep()
    COMMAND_ENV.update(os.environ)
    COMMAND_ENV[MARK.decode()[:-1]] = str(os.getpid())
    control = 0
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    frame(b"r", json.dumps({"pid": os.getpid()}).encode())
    while True:
        take_kills()  # a `kill` that came after its command had ended
        end = CONTROL.find(b"\n")
        if end < 0:
            if not read_control(control):
                return
            continue
        request = json.loads(bytes(CONTROL[:end]))
        del CONTROL[: end + 1]
        run(request, control, wake_r)


if __name__ == "__main__":
    main()
