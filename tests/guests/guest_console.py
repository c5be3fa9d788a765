"""The guest's serial console: a shell the test types commands into and reads from.

QEMU connects the guest's ttyS0 to its own stdin and stdout (pipes here).  A thread
copies everything the guest prints into a buffer, which the test searches, and into a
log file, which is kept when a test fails.

Commands are framed by begin and end markers that the shell prints around them, so
their output and exit status can be told apart from the terminal's echo of the typed
line, the prompt, and anything else on the console.  A marker is typed in two quoted
halves ("VHU-"'END-3fa9c1-7') so that the echoed command line never contains the
marker itself.
"""

import os
import re
import threading
import time


class ConsoleError(AssertionError):
    pass


class CommandFailed(ConsoleError):
    def __init__(self, command, status, output):
        super().__init__("guest command %r exited %d:\n%s" % (command, status, output))
        self.command, self.status, self.output = command, status, output


class GuestConsole:
    def __init__(self, reader, writer, log_path):
        self._reader = reader
        self._writer = writer
        self._log = open(log_path, "wb", buffering=0)
        self._text = ""
        self._cond = threading.Condition()
        self._eof = False
        self._sequence = 0
        # Makes markers unique to this console, so no program's output can end a
        # command early by printing something that looks like one.
        self._nonce = os.urandom(3).hex()
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self):
        while True:
            data = self._reader.read1(65536)
            if not data:
                break
            self._log.write(data)
            with self._cond:
                # The serial line sends CRLF; the tests' patterns expect plain newlines.
                self._text += data.decode("utf-8", "replace").replace("\r", "")
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    @property
    def text(self):
        """Everything the guest printed so far."""
        with self._cond:
            return self._text

    def wait_for(self, pattern, timeout, start=0):
        """Waits until `pattern` (a regex) appears in the console output at or after
        offset `start`; returns the match.  Raises ConsoleError on timeout or when the
        guest's console closes (QEMU exited)."""
        regex = re.compile(pattern, re.M)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                match = regex.search(self._text, start)
                if match:
                    return match
                remaining = deadline - time.monotonic()
                if self._eof or remaining <= 0:
                    why = "the console closed" if self._eof else "%.0f s passed" % timeout
                    raise ConsoleError("%s before %r appeared; console tail:\n%s"
                                       % (why, pattern, self._text[-2000:]))
                self._cond.wait(remaining)

    def write(self, text):
        self._writer.write(text.encode())
        self._writer.flush()

    def _next_markers(self):
        self._sequence += 1
        tag = "%s-%d" % (self._nonce, self._sequence)
        return "VHU-BEGIN-" + tag, "VHU-END-" + tag

    @staticmethod
    def _typed(marker):
        # "VHU-"'BEGIN-3fa9c1-7' prints the marker; the typed text does not contain it.
        head, tail = marker.split("-", 1)
        return "\"%s-\"'%s'" % (head, tail)

    def sync(self, timeout, attempts=20):
        """Waits until the shell answers.  Lines typed while the console is being set
        up can be lost, so it asks again until one is answered."""
        per_try = max(timeout / attempts, 0.5)
        deadline = time.monotonic() + timeout
        while True:
            begin, _ = self._next_markers()
            start = len(self.text)
            self.write("echo %s\n" % self._typed(begin))
            try:
                self.wait_for("^%s$" % begin, per_try, start)
                return
            except ConsoleError:
                if self._eof or time.monotonic() > deadline:
                    raise

    def run(self, command, timeout=30, check=True):
        """Runs a shell command in the guest; returns its output (stdout and stderr).
        Raises CommandFailed if it exits non-zero and `check` is set."""
        begin, end = self._next_markers()
        start = len(self.text)
        self.write("echo %s; { %s; } 2>&1; echo %s $?\n"
                   % (self._typed(begin), command, self._typed(end)))
        opened = self.wait_for("^%s$" % begin, timeout, start)
        closed = self.wait_for(r"^%s (\d+)$" % end, timeout, opened.end())
        output = self.text[opened.end() + 1:closed.start()]
        status = int(closed.group(1))
        if check and status != 0:
            raise CommandFailed(command, status, output)
        return output

    def close(self):
        self._thread.join(timeout=5)
        self._log.close()
