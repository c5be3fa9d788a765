"""vhostuser-loopback, the backend library without OVS, as a guest's peer.

It echoes every packet the guest sends back on the same queue pair.  Its stdout carries
the counters it prints when stopped; its stderr, kept in a log file, carries the
library's own log, which is where a refused request shows.
"""

import os
import re
import signal
import subprocess
import time


class LoopbackBackend:
    def __init__(self, binary, socket_path, log_path, client=False, queues=1, cpu=None):
        """client: connect to socket_path (QEMU listens) instead of serving it."""
        self.socket_path = socket_path
        self.log_path = log_path
        argv = [binary, "--socket", socket_path, "--queues", str(queues)]
        if client:
            argv.append("--client")
        if cpu is not None:
            argv += ["--cpu", str(cpu)]
        self.argv = argv
        self.process = None
        self.counters = None

    def start(self):
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(self.argv, stdout=subprocess.PIPE,
                                            stderr=log, text=True)

    def wait_listening(self, timeout=10):
        """Waits until the socket exists (server mode)."""
        deadline = time.monotonic() + timeout
        while not os.path.exists(self.socket_path):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("vhostuser-loopback did not listen on %s:\n%s"
                                     % (self.socket_path, self.log()))
            time.sleep(0.02)

    def stop(self, timeout=20):
        """Stops the loopback (SIGINT) and returns its counters:
        {"rx", "tx", "dropped", "errors", "connects", "queues": {q: (rx, tx)}}."""
        self.process.send_signal(signal.SIGINT)
        out, _ = self.process.communicate(timeout=timeout)
        self.counters = parse_counters(out)
        return self.counters

    def kill(self):
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()


def parse_counters(output):
    totals = re.search(r"^rx_packets=(\d+) tx_packets=(\d+) dropped=(\d+) errors=(\d+)"
                       r" connects=(\d+)", output, re.M)
    if not totals:
        raise AssertionError("vhostuser-loopback printed no counters:\n" + output)
    rx, tx, dropped, errors, connects = map(int, totals.groups())
    queues = {int(q): (int(qrx), int(qtx)) for q, qrx, qtx in
              re.findall(r"^queue=(\d+) rx_packets=(\d+) tx_packets=(\d+)", output, re.M)}
    counters = {"rx": rx, "tx": tx, "dropped": dropped, "errors": errors,
                "connects": connects, "queues": queues}
    # The vrings the guest enabled, printed by the loopback alongside its counters.
    status = re.search(r"^num_vrings=(\d+) enabled_rx_mask=0x([0-9a-f]+)"
                       r" enabled_tx_mask=0x([0-9a-f]+)", output, re.M)
    if status:
        counters["num_vrings"] = int(status.group(1))
        counters["enabled_rx_mask"] = int(status.group(2), 16)
        counters["enabled_tx_mask"] = int(status.group(3), 16)
    return counters
