"""A QEMU guest running Debian's cloud kernel with vhost-user network cards.

The guest runs under TCG (there is no KVM on the test machines), which dictates two
device settings: vectors=0 on virtio-net-pci (QEMU 7.2 crashes in
msix_set_vector_notifiers with MSI-X under TCG) and guest memory in a shared memfd, which
vhost-user needs so the backend can map it.

Each card is either
  - QEMU as the vhost-user client (`-chardev socket,path=SOCK`): the backend listens, as
    OVS's dpdkvhostuser ports do; the backend must be listening before start(); or
  - QEMU as the server (`server=on,wait=off`): QEMU listens and the backend connects, as
    OVS's dpdkvhostuserclient ports do; the guest boots without waiting for it.

The guest's serial console is QEMU's stdio, driven through GuestConsole.  The console
log, QEMU's own messages and its command line go to the work directory the caller
gives, which the caller keeps when a test fails.  QEMU's QMP monitor listens on
WORKDIR/NAME.qmp (qmp()).

Live migration (both QEMUs on this machine): migration_target() makes a second guest
with the same command line plus `-incoming unix:PATH` (its cards may sit on other
sockets, they keep the source's MACs); start() it, then migrate() the source to it,
wait_migrated() on the target, and the target's console is the guest's shell.

    image = guest_image.ensure_image()
    with QemuGuest(image, [VhostUserNic(sock)], workdir, kernel_args=["vhu.ip=10.0.0.1/24"]) as g:
        g.start(); g.wait_ready()
        print(g.interface_stats("eth0")["tx_packets"])
        g.poweroff()
"""

import copy
import ctypes
import json
import os
import re
import signal
import socket
import subprocess
import time
import zlib

from guest_console import ConsoleError, GuestConsole

# Bounds for a guest that boots in about 5 s here; generous for a loaded machine (boots
# of 45-58 s were seen with two guests while others compiled and fuzzed).
BOOT_TIMEOUT = 120
POWEROFF_TIMEOUT = 30


class VhostUserNic:
    def __init__(self, socket_path, qemu_listens=False, queues=1, mac=None,
                 reconnect_seconds=0, host_mtu=None, device_options=None):
        """qemu_listens: QEMU is the socket's server (for dpdkvhostuserclient ports).
        reconnect_seconds: with QEMU as client, retry a lost connection this often
        (0: never), e.g. for a switch that restarts.  host_mtu: the MTU the device
        advertises to the guest (VIRTIO_NET_F_MTU); QEMU also tells the backend
        (VHOST_USER_NET_SET_MTU).  device_options: further virtio-net-pci properties,
        e.g. {"mrg_rxbuf": "off"}."""
        self.socket_path = socket_path
        self.host_mtu = host_mtu
        self.qemu_listens = qemu_listens
        self.queues = queues
        self.mac = mac
        self.reconnect_seconds = reconnect_seconds
        self.device_options = dict(device_options or {})


def _die_with_parent():
    # QEMU spins the host CPU: it must not outlive a test killed by a timeout.
    libc = ctypes.CDLL(None, use_errno=True)
    PR_SET_PDEATHSIG = 1
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class QemuGuest:
    def __init__(self, image, nics, workdir, name="guest", cpus=None, memory_mb=256,
                 kernel_args=(), qemu="qemu-system-x86_64", quiet_boot=True,
                 extra_args=(), incoming=None):
        """image: a guest_image.GuestImage.  cpus: vCPUs (default: the largest queue
        count of the cards, as Linux enables one queue pair per vCPU).  kernel_args:
        extra kernel command line words, e.g. vhu.ip=... (see guest_init.sh).
        extra_args: further QEMU arguments, e.g. ["-global", "virtio-net-pci.x=y"].
        incoming: a unix socket path: QEMU waits there for a migration
        (`-incoming unix:PATH`) instead of booting."""
        self.image = image
        self.nics = list(nics)
        self.workdir = workdir
        self.name = name
        self.cpus = cpus or max([n.queues for n in self.nics] + [1])
        self.memory_mb = memory_mb
        self.kernel_args = list(kernel_args)
        self.qemu = qemu
        self.quiet_boot = quiet_boot
        self.extra_args = list(extra_args)
        self.incoming = incoming
        self.process = None
        self._qmp = None
        self.console = None
        self.boot_seconds = None
        self._started_at = None
        self.console_log = os.path.join(workdir, name + ".console.log")
        self.qemu_log = os.path.join(workdir, name + ".qemu.log")
        self.qmp_socket = os.path.join(workdir, name + ".qmp")

    def command_line(self):
        # no_timer_check: the kernel checks that the IO-APIC timer ticks during early
        # boot, and panics ("IO-APIC + timer doesn't work!") when a loaded host has not
        # run the vCPU in time, as seen here under TCG with the other core busy.
        append = (["console=ttyS0", "panic=-1", "no_timer_check"]
                  + (["quiet"] if self.quiet_boot else []))
        argv = [
            self.qemu, "-name", self.name, "-accel", "tcg", "-nodefaults",
            "-display", "none", "-no-reboot",
            "-smp", str(self.cpus), "-m", "%dM" % self.memory_mb,
            "-object", "memory-backend-memfd,id=mem,size=%dM,share=on" % self.memory_mb,
            "-numa", "node,memdev=mem",
            "-kernel", self.image.kernel, "-initrd", self.image.initramfs,
            "-append", " ".join(append + self.kernel_args),
            "-chardev", "stdio,id=console,signal=off", "-serial", "chardev:console",
            "-qmp", "unix:%s,server=on,wait=off" % self.qmp_socket,
        ]
        for i, nic in enumerate(self.nics):
            chardev = "socket,id=vhu%d,path=%s" % (i, nic.socket_path)
            if nic.qemu_listens:
                chardev += ",server=on,wait=off"
            elif nic.reconnect_seconds:
                chardev += ",reconnect=%d" % nic.reconnect_seconds
            mac = self.mac(i)
            device = "virtio-net-pci,netdev=net%d,mac=%s,vectors=0" % (i, mac)
            if nic.queues > 1:
                device += ",mq=on"
            if nic.host_mtu:
                device += ",host_mtu=%d" % nic.host_mtu
            for key, value in nic.device_options.items():
                device += ",%s=%s" % (key, value)
            argv += ["-chardev", chardev,
                     "-netdev", "vhost-user,id=net%d,chardev=vhu%d,queues=%d"
                     % (i, i, nic.queues),
                     "-device", device]
        argv += self.extra_args
        if self.incoming:
            argv += ["-incoming", "unix:" + self.incoming]
        return argv

    def mac(self, index):
        """The MAC of card `index`."""
        return self.nics[index].mac or self._default_mac(index)

    def _default_mac(self, index):
        # Locally administered, and distinct between guests of one test by their names.
        tag = zlib.crc32(self.name.encode()) & 0xffff
        return "52:54:00:%02x:%02x:%02x" % (tag >> 8, tag & 0xff, index + 1)

    def start(self):
        os.makedirs(self.workdir, exist_ok=True)
        argv = self.command_line()
        with open(os.path.join(self.workdir, self.name + ".cmdline"), "w") as f:
            f.write(" ".join(argv) + "\n")
        self._started_at = time.monotonic()
        with open(self.qemu_log, "wb") as stderr:
            self.process = subprocess.Popen(argv, stdin=subprocess.PIPE,
                                            stdout=subprocess.PIPE, stderr=stderr,
                                            preexec_fn=_die_with_parent)
        self.console = GuestConsole(self.process.stdout, self.process.stdin,
                                    self.console_log)

    def wait_ready(self, timeout=BOOT_TIMEOUT):
        """Waits for /init's ready line and for the shell to answer; returns the
        seconds since start().  Raises ConsoleError with QEMU's messages if the guest
        does not get there."""
        try:
            self.console.wait_for(r"^VHU-GUEST-READY", timeout)
            errors = re.findall(r"^VHU-ERROR.*$", self.console.text, re.M)
            if errors:
                raise ConsoleError("guest setup failed: " + "; ".join(errors))
            self.console.sync(timeout)
        except ConsoleError as e:
            raise ConsoleError("%s boot: %s\nQEMU said:\n%s"
                               % (self.name, e, self._qemu_messages())) from None
        self.boot_seconds = time.monotonic() - self._started_at
        return self.boot_seconds

    def _qemu_messages(self):
        try:
            with open(self.qemu_log, errors="replace") as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    def run(self, command, timeout=30, check=True):
        """Runs a shell command in the guest; returns its output."""
        return self.console.run(command, timeout=timeout, check=check)

    def interface_driver(self, iface):
        """The driver bound to the interface's device, or None while it has none."""
        out = self.run("readlink /sys/class/net/%s/device/driver" % iface, check=False)
        return os.path.basename(out.strip()) if "/" in out else None

    def wait_for_interface(self, iface, driver="virtio_net", timeout=30):
        deadline = time.monotonic() + timeout
        while True:
            found = self.interface_driver(iface)
            if found == driver:
                return
            if time.monotonic() > deadline:
                raise ConsoleError("%s: %s has driver %r after %d s, expected %r"
                                   % (self.name, iface, found, timeout, driver))
            time.sleep(0.5)

    def interface_stats(self, iface):
        """/sys/class/net/IFACE/statistics/* as a dict of ints."""
        out = self.run("cd /sys/class/net/%s/statistics && grep -H . *" % iface)
        stats = {}
        for line in out.splitlines():
            name, _, value = line.partition(":")
            if value.strip().isdigit():
                stats[name] = int(value)
        return stats

    def qmp(self, command, timeout=30, **arguments):
        """Runs a QMP command on this QEMU; returns its "return" value.  Raises
        QmpError on an error reply, ConsoleError if QEMU does not answer."""
        if self._qmp is None:
            self._qmp = QmpClient(self.qmp_socket, timeout)
        return self._qmp.execute(command, arguments, timeout)

    def migration_target(self, nics, name, incoming):
        """A guest (not started) that can take this one's migration: the same QEMU
        command line with `-incoming unix:INCOMING`, its cards on the sockets of
        `nics` (one per card of this guest) with this guest's MACs."""
        if len(nics) != len(self.nics):
            raise ValueError("the target needs as many cards as the source")
        cards = []
        for i, nic in enumerate(nics):
            card = copy.copy(nic)
            card.mac = self.mac(i)
            cards.append(card)
        return QemuGuest(self.image, cards, self.workdir, name=name, cpus=self.cpus,
                         memory_mb=self.memory_mb, kernel_args=self.kernel_args,
                         qemu=self.qemu, quiet_boot=self.quiet_boot,
                         extra_args=self.extra_args, incoming=incoming)

    def migrate(self, target, timeout=120, poll=0.1, parameters=None):
        """Migrates this guest to `target` (started, made by migration_target()):
        QMP migrate to its -incoming socket (as HMP `migrate -d unix:PATH`), then
        query-migrate until the migration ends.  Returns query-migrate's last answer
        (status, total-time, downtime, setup-time, ram ...).  parameters:
        migrate-set-parameters first, e.g. {"max-bandwidth": 1 << 30}."""
        if parameters:
            self.qmp("migrate-set-parameters", **parameters)
        self.qmp("migrate", uri="unix:" + target.incoming)
        deadline = time.monotonic() + timeout
        while True:
            info = self.qmp("query-migrate")
            if info.get("status") in ("completed", "failed", "cancelled"):
                return info
            if time.monotonic() > deadline:
                return info
            time.sleep(poll)

    def wait_migrated(self, timeout=60):
        """On a migration target: waits until the guest runs here and its shell
        answers on this QEMU's console."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.qmp("query-status")
            if status.get("status") == "running":
                break
            if time.monotonic() > deadline:
                raise ConsoleError("%s: not running %d s after the migration: %s\n"
                                   "QEMU said:\n%s" % (self.name, timeout, status,
                                                        self._qemu_messages()))
            time.sleep(0.1)
        self.console.sync(max(deadline - time.monotonic(), 5))

    def quit(self, timeout=POWEROFF_TIMEOUT):
        """Ends QEMU through QMP quit (e.g. a migration source, which stays paused
        after the migration); returns its exit status."""
        if self.is_running():
            try:
                self.qmp("quit", timeout=5)
            except (ConsoleError, QmpError, OSError):
                pass  # QEMU may close the monitor before it answers.
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise ConsoleError("%s did not quit within %d s" % (self.name, timeout))
        self.kill()
        return self.process.returncode

    def is_running(self):
        return self.process is not None and self.process.poll() is None

    def poweroff(self, timeout=POWEROFF_TIMEOUT):
        """Powers the guest off from inside and waits for QEMU to exit; returns QEMU's
        exit status.  Falls back to kill() and raises if that takes too long."""
        if not self.is_running():
            return self.process.returncode if self.process else None
        self.console.write("poweroff -f\n")
        try:
            status = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise ConsoleError("%s did not power off within %d s" % (self.name, timeout))
        self.console.close()
        return status

    def kill(self):
        """Ends QEMU at once, as a crash of the VM would."""
        if self._qmp is not None:
            self._qmp.close()
            self._qmp = None
        if self.is_running():
            self.process.kill()
        if self.process:
            self.process.wait()
        if self.console:
            self.console.close()
        if self.process:
            for pipe in (self.process.stdin, self.process.stdout):
                if pipe:
                    try:
                        pipe.close()
                    except OSError:
                        pass  # A write QEMU never read; it is gone anyway.

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill()
        return False


class QmpError(AssertionError):
    pass


class QmpClient:
    """QEMU's QMP monitor on a unix socket: one command at a time; events are
    skipped."""

    def __init__(self, path, timeout):
        deadline = time.monotonic() + timeout
        while True:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                self.sock.connect(path)
                break
            except OSError as e:
                self.sock.close()
                if time.monotonic() > deadline:
                    raise ConsoleError("QMP %s: %s" % (path, e)) from None
                time.sleep(0.1)
        self.path = path
        self.buffer = b""
        self._read(timeout)  # The greeting.
        self.execute("qmp_capabilities", {}, timeout)

    def _read(self, timeout):
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ConsoleError("QMP %s: no answer in %d s" % (self.path, timeout))
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            if not data:
                raise ConsoleError("QMP %s: QEMU closed the monitor" % self.path)
            self.buffer += data
        line, _, self.buffer = self.buffer.partition(b"\n")
        return json.loads(line)

    def execute(self, command, arguments, timeout):
        request = {"execute": command}
        if arguments:
            request["arguments"] = arguments
        self.sock.sendall(json.dumps(request).encode() + b"\n")
        while True:
            reply = self._read(timeout)
            if "return" in reply:
                return reply["return"]
            if "error" in reply:
                raise QmpError("QMP %s: %s" % (command, reply["error"]))

    def close(self):
        self.sock.close()
