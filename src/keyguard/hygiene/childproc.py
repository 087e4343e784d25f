"""Running a child process with only its granted secrets and with its output redacted live.

The child's environment is the parent's minus everything secret-looking
(``keyguard.edge.env.child_env``) plus the secrets its tool may have in its environment
(``keyguard.edge.env.sandbox_env``), or their placeholders. Its stdout and stderr pass
through one ``StreamRedactor`` each, so a key split across two writes is still caught.
When our stdout is a terminal the child runs on a pseudo-terminal (colours, line
editing and ``isatty()`` keep working) with our terminal in raw mode.
"""

from __future__ import annotations

import codecs
import contextlib
import errno
import os
import selectors
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import IO, Any

__all__ = ["FORWARDED_SIGNALS", "build_env", "run_child"]

FORWARDED_SIGNALS = tuple(
    getattr(signal, name)
    for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2")
    if hasattr(signal, name)
)
# The stream redactor holds back a tail that could be the start of a key. When the
# child then goes quiet, what is safe is let out (``StreamRedactor.release``: all but a
# tail that starts a known value or an unfinished token), so prompts do not hang:
# after LINE_IDLE_FLUSH when the output ends a line, else after TTY_IDLE_FLUSH (on a
# pipe too: a prompt read by a program). A key written in two halves with any pause in
# between is still caught; only ``flush`` at the end of the output lets the rest go.
LINE_IDLE_FLUSH = 0.05
TTY_IDLE_FLUSH = 0.5
READ_SIZE = 65536


def build_env(
    *,
    policy: Any,
    store: Any,
    tool: str | None,
    placeholders: bool,
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The child's environment: non-secret parent variables + the tool's granted secrets."""
    from keyguard.edge.env import child_env, sandbox_env

    granted = list(policy.sandbox_env(tool)) if policy is not None else []
    if placeholders:
        extra = {name: store.get(name).placeholder for name in granted}
    else:
        extra = sandbox_env(policy, tool, store, dict.fromkeys(granted)) if granted else {}
    env = child_env(base, store=store, policy=policy)
    env.update(extra)
    return env


class _Redacting:
    """bytes in -> redacted bytes out, for one output stream."""

    def __init__(self, redactor: Any, out: IO[bytes]) -> None:
        self.stream = redactor.stream()
        # surrogateescape keeps non-UTF-8 output byte-for-byte.
        self.decoder = codecs.getincrementaldecoder("utf-8")("surrogateescape")
        self.out = out
        self.at_line_end = False
        self.released = False  # released since the last output: wait for more
        self.broken = False  # our reader went away (`keyguard run -- cmd | head -1`)

    def _write(self, text: str) -> None:
        if text and not self.broken:
            try:
                self.out.write(text.encode("utf-8", "surrogateescape"))
                self.out.flush()
            except BrokenPipeError:
                self.broken = True

    @property
    def pending(self) -> bool:
        return self.stream.pending > 0

    def idle_timeout(self) -> float | None:
        if not self.pending or self.released:
            return None
        return LINE_IDLE_FLUSH if self.at_line_end else TTY_IDLE_FLUSH

    def feed(self, data: bytes) -> None:
        text = self.decoder.decode(data)
        if text:
            self.at_line_end = text.endswith("\n")
        self.released = False
        self._write(self.stream.feed(text))

    def release(self) -> None:
        """The child went quiet: let out what cannot be part of a secret."""
        self.released = True
        self._write(self.stream.release())

    def flush(self) -> None:
        tail = self.decoder.decode(b"", final=True)
        self._write(self.stream.feed(tail) + self.stream.flush())
        self.decoder.reset()


def _timeout(outs: Iterable[_Redacting]) -> float | None:
    waits = [t for o in outs if (t := o.idle_timeout()) is not None]
    return min(waits) if waits else None


@contextlib.contextmanager
def _forward_signals(target: Callable[[], int]) -> Iterator[None]:
    """Deliver the signals we receive to the child's process group instead of dying."""

    def handler(signum: int, _frame: Any) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(target(), signum)

    old = {}
    for sig in FORWARDED_SIGNALS:
        with contextlib.suppress(ValueError, OSError):  # not in the main thread
            old[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, prev in old.items():
            signal.signal(sig, prev)


def _exit_status(returncode: int) -> int:
    # A child killed by signal N: the shell convention 128+N (the CLI re-raises it).
    return 128 - returncode if returncode < 0 else returncode


def _pump_pipes(
    proc: subprocess.Popen[bytes], redactor: Any, stdout: IO[bytes], stderr: IO[bytes]
) -> None:
    assert proc.stdout is not None and proc.stderr is not None
    sel = selectors.DefaultSelector()
    outs = {
        proc.stdout.fileno(): _Redacting(redactor, stdout),
        proc.stderr.fileno(): _Redacting(redactor, stderr),
    }
    pipes = {proc.stdout.fileno(): proc.stdout, proc.stderr.fileno(): proc.stderr}
    for fd in outs:
        sel.register(fd, selectors.EVENT_READ)
    while sel.get_map():
        events = sel.select(_timeout(outs.values()))
        if not events:
            for o in outs.values():
                if o.idle_timeout() is not None:
                    o.release()
        for key, _ in events:
            try:
                data = os.read(key.fd, READ_SIZE)
            except InterruptedError:
                continue
            if data:
                outs[key.fd].feed(data)
            if data and outs[key.fd].broken:
                # Close our end so the child's next write fails (SIGPIPE), as it would
                # have without us in between.
                sel.unregister(key.fd)
                pipes[key.fd].close()
            elif not data:
                sel.unregister(key.fd)
                outs[key.fd].flush()
    sel.close()


def _pump_pty(
    proc: subprocess.Popen[bytes],
    master: int,
    redactor: Any,
    stdout: IO[bytes],
    stdin_fd: int | None,
) -> None:
    sel = selectors.DefaultSelector()
    out = _Redacting(redactor, stdout)
    sel.register(master, selectors.EVENT_READ)
    if stdin_fd is not None:
        try:
            sel.register(stdin_fd, selectors.EVENT_READ)
        except PermissionError:
            # epoll refuses regular files and /dev/null (always readable): copy them from a
            # thread so a child that does not read its input cannot block our output loop.
            threading.Thread(target=_copy_then_eof, args=(stdin_fd, master), daemon=True).start()
    while True:
        events = sel.select(_timeout([out]))
        if not events:
            out.release()
            continue
        done = False
        for key, _ in events:
            if key.fd == master:
                try:
                    data = os.read(master, READ_SIZE)
                except OSError as exc:  # EIO: every slave fd is closed, the child is gone
                    if exc.errno != errno.EIO:
                        raise
                    data = b""
                if data:
                    out.feed(data)
                else:
                    done = True
            else:
                data = os.read(key.fd, READ_SIZE)
                if data:
                    os.write(master, data)
                else:  # our stdin ended: tell the child with an EOF (^D)
                    sel.unregister(key.fd)
                    with contextlib.suppress(OSError):
                        os.write(master, b"\x04")
        if done:
            break
    out.flush()
    sel.close()


def _copy_then_eof(src_fd: int, master: int) -> None:
    with contextlib.suppress(OSError):
        while data := os.read(src_fd, READ_SIZE):
            os.write(master, data)
        os.write(master, b"\x04")


def _copy_winsize(src_fd: int, dst_fd: int) -> None:
    import fcntl
    import termios

    with contextlib.suppress(OSError):
        size = fcntl.ioctl(src_fd, termios.TIOCGWINSZ, b"\0" * 8)
        fcntl.ioctl(dst_fd, termios.TIOCSWINSZ, size)


def run_child(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    redactor: Any,
    use_pty: bool | None = None,
    stdout: IO[bytes] | None = None,
    stderr: IO[bytes] | None = None,
) -> int:
    """Run ``argv`` and return its exit status (128+N when killed by signal N)."""
    stdout = stdout or sys.stdout.buffer
    stderr = stderr or sys.stderr.buffer
    if use_pty is None:
        use_pty = os.isatty(stdout.fileno()) if hasattr(stdout, "fileno") else False
    if use_pty:
        return _run_pty(argv, env, redactor, stdout)
    proc = subprocess.Popen(
        list(argv),
        env=dict(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # our signals reach it once, through the handler below
    )
    with _forward_signals(lambda: proc.pid):
        _pump_pipes(proc, redactor, stdout, stderr)
        proc.wait()
    return _exit_status(proc.returncode)


def _run_pty(argv: Sequence[str], env: Mapping[str, str], redactor: Any, stdout: IO[bytes]) -> int:
    import fcntl
    import pty
    import termios
    import tty

    master, slave = pty.openpty()
    out_fd = stdout.fileno()
    _copy_winsize(out_fd, slave)

    def make_controlling_tty() -> None:  # runs in the child, after setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    try:
        proc = subprocess.Popen(
            list(argv),
            env=dict(env),
            stdin=slave,
            stdout=slave,
            stderr=slave,
            start_new_session=True,
            preexec_fn=make_controlling_tty,
        )
    finally:
        os.close(slave)
    # Our stdin (a terminal, or a pipe: `echo y | keyguard run -- cmd`) feeds the pty; a
    # terminal goes to raw mode so keys reach the child's line discipline unchanged.
    stdin_fd = sys.stdin.fileno() if sys.stdin is not None else None
    saved = None
    if stdin_fd is not None and os.isatty(stdin_fd):
        saved = termios.tcgetattr(stdin_fd)

    def on_winch(_signum: int, _frame: Any) -> None:
        _copy_winsize(out_fd, master)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGWINCH)

    old_winch = signal.signal(signal.SIGWINCH, on_winch)
    try:
        if saved is not None and stdin_fd is not None:
            tty.setraw(stdin_fd)
        with _forward_signals(lambda: proc.pid):
            _pump_pty(proc, master, redactor, stdout, stdin_fd)
            proc.wait()
    finally:
        if saved is not None and stdin_fd is not None:
            termios.tcsetattr(stdin_fd, termios.TCSAFLUSH, saved)
        signal.signal(signal.SIGWINCH, old_winch)
        os.close(master)
    return _exit_status(proc.returncode)
