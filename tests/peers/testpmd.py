"""DPDK testpmd with virtio_user ports: the VM-side peer of our tests and benchmarks.

testpmd runs interactively (-i) so that a test can start and stop forwarding and read
its counters at the moments it chooses.  Its forwarding lcore is pinned to one CPU and
our switch (or loopback backend) to the other, as on the 2-core machines we test on.
"""

import os
import re
import subprocess
import threading
import time

TESTPMD = "dpdk-testpmd"


class TestPmd:
    """One dpdk-testpmd process with one virtio_user port per socket path."""

    def __init__(self, sockets, queues=1, queue_size=None, mrg_rxbuf=None,
                 in_order=None, packed_vq=None, server=False, forward_mode="io",
                 cpu=1, hugepages=False, file_prefix=None, burst=None, descs=None,
                 extra_args=(), log_path=None, vhost=False, eal_args=()):
        # vhost=True: the ports are DPDK's vhost PMD (net_vhost) serving the sockets,
        # the baseline our backend is compared with, instead of virtio_user.
        self.sockets = list(sockets)
        prefix = file_prefix or "vhu-tp-%d-%d" % (os.getpid(), id(self) % 100000)
        vdevs = []
        # 'server' may be one flag for every port or a list, one per socket.
        servers = list(server) if isinstance(server, (list, tuple)) else \
            [server] * len(self.sockets)
        for i, path in enumerate(self.sockets):
            devargs = ["path=%s" % path, "queues=%d" % queues]
            for name, value in (("queue_size", queue_size), ("mrg_rxbuf", mrg_rxbuf),
                                ("in_order", in_order), ("packed_vq", packed_vq)):
                if value is not None:
                    devargs.append("%s=%d" % (name, value))
            if servers[i]:
                devargs.append("server=1")
            if vhost:
                vdevs += ["--vdev", "net_vhost%d,iface=%s,queues=%d" % (i, path, queues)]
            else:
                vdevs += ["--vdev", "virtio_user%d,%s" % (i, ",".join(devargs))]
        # eal_args come before our --log-level: of the --log-level options that match a
        # log type registered later (a PMD's), DPDK 22.11 applies the first given.
        eal = (["--lcores", "0@%d,1@%d" % (cpu, cpu), "--no-pci", "--file-prefix", prefix]
               + list(eal_args) + ["--log-level", "*:notice"])
        if hugepages:
            eal += ["--single-file-segments", "-m", "512"]
        else:
            eal += ["--no-huge", "-m", "512"]
        app = ["-i", "--forward-mode=%s" % forward_mode, "--total-num-mbufs=16384",
               "--rxq=%d" % queues, "--txq=%d" % queues, "--nb-cores=1"]
        if burst:
            app.append("--burst=%d" % burst)
        if descs:
            app += ["--txd=%d" % descs, "--rxd=%d" % descs]
        # testpmd's printf output to a pipe is block-buffered: unbuffer it so answers
        # arrive when the command does.
        self.argv = ["stdbuf", "-o0", "-e0", TESTPMD] + eal + vdevs + ["--"] + app + list(extra_args)
        self.log_path = log_path
        self._output = []
        self._lock = threading.Lock()
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     bufsize=0)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        # Read chunks, not lines: the "testpmd> " prompt ends without a newline.
        log = open(self.log_path, "a") if self.log_path else None
        fd = self.proc.stdout.fileno()
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            text = chunk.decode(errors="replace")
            with self._lock:
                self._output.append(text)
            if log:
                log.write(text)
                log.flush()
        if log:
            log.close()

    def output(self):
        with self._lock:
            return "".join(self._output)

    def wait_for(self, pattern, timeout=30, start=0):
        """Waits until 'pattern' appears in the output after offset 'start'."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            out = self.output()
            if re.search(pattern, out[start:]):
                return True
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError("testpmd: no %r within %ss (exit %s). Output:\n%s"
                           % (pattern, timeout, self.proc.poll(), self.output()[-4000:]))

    def command(self, line):
        self.proc.stdin.write((line + "\n").encode())
        self.proc.stdin.flush()

    def wait_ready(self, timeout=60):
        self.wait_for(r"testpmd> ", timeout)

    def wait_link_up(self, port=0, timeout=30):
        """Polls 'show port info' until the virtio_user port's link is up."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            mark = len(self.output())
            self.command("show port info %d" % port)
            self.wait_for(r"Link status: (up|down)", 10, mark)
            if re.search(r"Link status: up", self.output()[mark:]):
                return
            time.sleep(0.2)
        raise RuntimeError("testpmd port %d link never came up" % port)

    def port_stats(self):
        """Returns {port: {'rx': packets, 'tx': packets, 'rx_errors': n, ...}}."""
        mark = len(self.output())
        self.command("show port stats all")
        n = len(self.sockets)
        deadline = time.time() + 15
        while time.time() < deadline:
            text = self.output()[mark:]
            if len(re.findall(r"Tx-pps:", text)) >= n:
                break
            time.sleep(0.05)
        text = self.output()[mark:]
        stats = {}
        for block in re.split(r"#+ NIC statistics for port ", text)[1:]:
            port = int(re.match(r"(\d+)", block).group(1))
            def grab(name):
                m = re.search(name + r":\s+(\d+)", block)
                return int(m.group(1)) if m else 0
            stats[port] = {"rx": grab("RX-packets"), "tx": grab("TX-packets"),
                           "rx_missed": grab("RX-missed"), "rx_errors": grab("RX-errors"),
                           "tx_errors": grab("TX-errors"), "rx_bytes": grab("RX-bytes"),
                           "tx_bytes": grab("TX-bytes"),
                           "rx_pps": grab("Rx-pps"), "tx_pps": grab("Tx-pps")}
        return stats

    def quit(self, timeout=20):
        if self.proc.poll() is None:
            try:
                self.command("quit")
            except (BrokenPipeError, ValueError):
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(5)
        return self.proc.returncode

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(5)
