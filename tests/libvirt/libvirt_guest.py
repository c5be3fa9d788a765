"""libvirt's daemon and guests defined through it, for the libvirt tests.

LibvirtDaemon makes sure Debian's libvirtd (and virtlogd, which it sends QEMU's output
to) is running, starting them when they are not and stopping at the end only what it
started.  A libvirtd it starts gets OVS_RUNDIR in its environment: libvirt runs
`ovs-vsctl` itself for vhost-user interfaces (to find the OVS Interface behind a
socket, and for `virsh domifstat`), and OVS_RUNDIR points that ovs-vsctl at the
test's private OVS, as /var/run/openvswitch would on a compute node.

LibvirtGuest is one domain: defined from the XML Nova writes for an instance with a
vhost-user VIF and 2 MiB huge pages (hw:mem_page_size), booting the test guest's
kernel and initramfs directly, its serial console on a pty that the test drives with
tests/guests/guest_console.py.  The one difference from Nova's XML is the device
property vectors=0 (`<qemu:override>`), which QEMU 7.2 needs for a vhost-user
virtio-net device under TCG.
"""

import grp
import io
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import tty
import uuid
from xml.sax.saxutils import quoteattr, escape

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "guests"))
from guest_console import ConsoleError, GuestConsole  # noqa: E402

VIRSH = ["virsh", "--quiet", "-c", "qemu:///system"]
LIBVIRT_SOCKET = "/run/libvirt/libvirt-sock"
VIRTLOGD_SOCKET = "/run/libvirt/virtlogd-sock"
BOOT_TIMEOUT = 120
# Domains of these tests are named with this prefix; leftovers of a killed run are
# destroyed and undefined before a new one starts.
DOMAIN_PREFIX = "vhu-libvirt-"
HUGEPAGE_KB = 2048
# <memoryBacking> contents.  hugepages: Nova's, for a flavor with hw:mem_page_size
# (with memAccess="shared" on the NUMA cell, which the domain XML always has).
# file: Nova's with [libvirt]file_backed_memory (files in qemu.conf's
# memory_backing_dir).  memfd: plain libvirt's shared memory without huge pages.
MEMORY_BACKING = {
    "hugepages": ('    <hugepages>\n'
                  '      <page size="%d" unit="KiB" nodeset="0"/>\n'
                  '    </hugepages>\n' % HUGEPAGE_KB),
    "file": ('    <source type="file"/>\n'
             '    <access mode="shared"/>\n'
             '    <allocation mode="immediate"/>\n'
             '    <discard/>\n'),
    "memfd": ('    <source type="memfd"/>\n'
              '    <access mode="shared"/>\n'),
}


class LibvirtError(AssertionError):
    pass


def virsh(*args, check=True, timeout=60):
    result = subprocess.run(VIRSH + list(args), capture_output=True, text=True,
                            timeout=timeout)
    if check and result.returncode:
        raise LibvirtError("virsh %s: exit status %d: %s" % (
            " ".join(args), result.returncode, (result.stderr or result.stdout).strip()))
    return result.stdout


def _pid_of(name):
    """The pid of a running process whose command is `name`, or None."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/comm" % entry) as f:
                if f.read().strip() == name:
                    return int(entry)
        except OSError:
            pass
    return None


def _answers(path):
    """Whether a unix socket at `path` accepts connections."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(5)
        sock.connect(path)
        return True
    except OSError:
        return False
    finally:
        sock.close()


def _environ(pid):
    try:
        with open("/proc/%d/environ" % pid, "rb") as f:
            pairs = f.read().split(b"\0")
    except OSError:
        return {}
    return dict(p.decode(errors="replace").split("=", 1) for p in pairs if b"=" in p)


class LibvirtDaemon:
    """libvirtd and virtlogd: started here unless they run; stop() ends only those
    started here."""

    def __init__(self, ovs_rundir, logdir):
        self.ovs_rundir = ovs_rundir
        self.logdir = logdir
        self.started = []  # (name, Popen)
        self.reaper = None

    def start(self):
        if not shutil.which("libvirtd"):
            raise LibvirtError("libvirtd is not installed (utilities/install-deps.sh "
                               "installs libvirt-daemon-system)")
        if not _answers(VIRTLOGD_SOCKET):
            self._spawn("virtlogd", ["virtlogd"], {}, VIRTLOGD_SOCKET)
        # A socket that answers is a running libvirtd, or systemd's socket for one.
        if _answers(LIBVIRT_SOCKET):
            virsh("version")
            pid = _pid_of("libvirtd")
            rundir = _environ(pid).get("OVS_RUNDIR") if pid else None
            if rundir != self.ovs_rundir:
                raise LibvirtError(
                    "libvirtd (pid %s) runs already, with OVS_RUNDIR=%s: its ovs-vsctl "
                    "would not see this test's OVS (%s).  Stop it for the test "
                    "(systemctl stop libvirtd.service libvirtd.socket "
                    "libvirtd-ro.socket libvirtd-admin.socket)"
                    % (pid, rundir, self.ovs_rundir))
        else:
            self._spawn("libvirtd", ["libvirtd"], {"OVS_RUNDIR": self.ovs_rundir},
                        LIBVIRT_SOCKET, ready=lambda: virsh("version", check=False))

    def _spawn(self, name, argv, env, socket_path, ready=None, timeout=30):
        log = open(os.path.join(self.logdir, name + ".log"), "w")
        # Nobody answers on it (see start()): a stale socket of a daemon that was
        # killed, which would look like a ready daemon.
        if os.path.exists(socket_path):
            os.unlink(socket_path)
        # Not killed with the test: if the test dies, the reaper (below) first has
        # libvirtd destroy the domains, then ends the daemons.
        process = subprocess.Popen(argv, env=dict(os.environ, **env),
                                   stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                   start_new_session=True)
        log.close()
        self.started.append((name, process))
        deadline = time.monotonic() + timeout
        while not os.path.exists(socket_path) or (ready and not ready()):
            if process.poll() is not None:
                raise LibvirtError("%s exited with status %d at start; see %s/%s.log"
                                   % (name, process.returncode, self.logdir, name))
            if time.monotonic() > deadline:
                raise LibvirtError("%s not ready within %d s" % (name, timeout))
            time.sleep(0.1)

    def start_reaper(self, hugepages=None):
        """Starts a process that, should this one die before stop() (killed by a
        timeout), destroys and undefines the test's domains, ends the daemons started
        here and gives back the huge pages reserved (a HugePages)."""
        argv = [sys.executable, "-B", os.path.abspath(__file__), "--reap",
                str(os.getpid())]
        argv += ["--pid=%d" % p.pid for _, p in reversed(self.started)]
        if hugepages is not None and hugepages.old_nr is not None:
            argv.append("--nr-hugepages=%d" % hugepages.old_nr)
        self.reaper = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                       start_new_session=True)

    def stop(self):
        """Ends the daemons started here (libvirtd first); returns their names."""
        if self.reaper is not None:
            self.reaper.kill()
            self.reaper.wait()
            self.reaper = None
        stopped = []
        for name, process in reversed(self.started):
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            stopped.append(name)
        self.started = []
        return stopped


class HugePages:
    """Makes sure `pages` 2 MiB huge pages are free (hugetlbfs on /dev/hugepages, as
    libvirt expects); restore() puts back what it changed."""

    NR = "/proc/sys/vm/nr_hugepages"

    def __init__(self, pages):
        self.pages = pages
        self.old_nr = None
        self.mounted = False

    @staticmethod
    def free():
        with open("/proc/meminfo") as f:
            return int(re.search(r"^HugePages_Free:\s+(\d+)", f.read(), re.M).group(1))

    def reserve(self):
        if not subprocess.run(["mountpoint", "-q", "/dev/hugepages"]).returncode == 0:
            os.makedirs("/dev/hugepages", exist_ok=True)
            subprocess.run(["mount", "-t", "hugetlbfs", "nodev", "/dev/hugepages"],
                           check=True)
            self.mounted = True
        free = self.free()
        if free < self.pages:
            with open(self.NR) as f:
                self.old_nr = int(f.read())
            with open(self.NR, "w") as f:
                f.write(str(self.old_nr + self.pages - free))
            if self.free() < self.pages:
                raise LibvirtError("%d free huge pages of 2 MiB needed, %d could be "
                                   "reserved" % (self.pages, self.free()))

    def restore(self):
        if self.old_nr is not None:
            with open(self.NR, "w") as f:
                f.write(str(self.old_nr))
            self.old_nr = None
        if self.mounted:
            subprocess.run(["umount", "/dev/hugepages"])
            self.mounted = False


class VhostUserInterface:
    """An <interface type='vhostuser'> as Nova writes it: mode 'client' for an OVS
    dpdkvhostuser port (the switch listens at PATH), 'server' for a
    dpdkvhostuserclient port (QEMU listens at PATH, the port's
    options:vhost-server-path).  target: the OVS port's name (Nova's vif_name)."""

    def __init__(self, path, mode, mac, target):
        self.path, self.mode, self.mac, self.target = path, mode, mac, target

    def xml(self):
        return ("    <interface type=\"vhostuser\">\n"
                "      <mac address=%s/>\n"
                "      <model type=\"virtio\"/>\n"
                "      <source type=\"unix\" mode=%s path=%s/>\n"
                "      <target dev=%s/>\n"
                "    </interface>\n"
                % (quoteattr(self.mac), quoteattr(self.mode), quoteattr(self.path),
                   quoteattr(self.target)))


class _PtyReader(io.RawIOBase):
    """The console pty for GuestConsole: EIO (QEMU closed its side) reads as EOF."""

    def __init__(self, fd):
        self.fd = fd

    def readable(self):
        return True

    def readinto(self, buffer):
        try:
            data = os.read(self.fd, len(buffer))
        except OSError:
            return 0
        buffer[:len(data)] = data
        return len(data)


class LibvirtGuest:
    """A domain with vhost-user interfaces, booting `image` (guest_image.GuestImage)
    with kernel parameters `kernel_args`.  Its files (kernel, initramfs, console log,
    domain XML) go in `workdir`/NAME, as Nova keeps an instance's in its directory."""

    def __init__(self, image, interfaces, workdir, name, kernel_args=(),
                 memory_mb=256, memory_backing="hugepages"):
        """memory_backing: a key of MEMORY_BACKING."""
        self.memory_backing = memory_backing
        self.name = name
        self.domain = DOMAIN_PREFIX + name
        self.interfaces = list(interfaces)
        self.kernel_args = list(kernel_args)
        self.memory_kb = memory_mb * 1024
        self.dir = os.path.join(workdir, name)
        os.makedirs(self.dir, exist_ok=True)
        self.kernel = os.path.join(self.dir, "kernel")
        self.initrd = os.path.join(self.dir, "ramdisk")
        shutil.copyfile(image.kernel, self.kernel)
        shutil.copyfile(image.initramfs, self.initrd)
        self.uuid = str(uuid.uuid4())
        self.console = None
        self._fd = None
        self._writer = None
        self._boots = 0
        self.boot_seconds = None
        self._started_at = None

    def xml(self):
        # no_timer_check: see qemu_guest.py (a loaded host under TCG).
        cmdline = " ".join(["console=ttyS0", "panic=-1", "no_timer_check", "quiet"]
                           + self.kernel_args)
        mem = self.memory_kb
        backing = MEMORY_BACKING[self.memory_backing]
        return """<domain type="qemu" xmlns:qemu="http://libvirt.org/schemas/domain/qemu/1.0">
  <uuid>{uuid}</uuid>
  <name>{name}</name>
  <memory>{mem}</memory>
  <memoryBacking>
{backing}  </memoryBacking>
  <numatune>
    <memory mode="strict" nodeset="0"/>
    <memnode cellid="0" mode="strict" nodeset="0"/>
  </numatune>
  <vcpu>1</vcpu>
  <os>
    <type machine="pc">hvm</type>
    <kernel>{kernel}</kernel>
    <initrd>{initrd}</initrd>
    <cmdline>{cmdline}</cmdline>
  </os>
  <features>
    <acpi/>
    <apic/>
  </features>
  <cpu>
    <topology sockets="1" cores="1" threads="1"/>
    <numa>
      <cell id="0" cpus="0" memory="{mem}" memAccess="shared"/>
    </numa>
  </cpu>
  <clock offset="utc"/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
{interfaces}    <serial type="pty">
      <log file="{log}" append="off"/>
    </serial>
  </devices>
  <qemu:override>
{overrides}  </qemu:override>
</domain>
""".format(uuid=self.uuid, name=escape(self.domain), mem=mem, backing=backing,
           kernel=escape(self.kernel), initrd=escape(self.initrd),
           cmdline=escape(cmdline),
           interfaces="".join(i.xml() for i in self.interfaces),
           log=escape(os.path.join(self.dir, "console.log")),
           overrides="".join(
               "    <qemu:device alias=\"net%d\">\n"
               "      <qemu:frontend>\n"
               "        <qemu:property name=\"vectors\" type=\"unsigned\" value=\"0\"/>\n"
               "      </qemu:frontend>\n"
               "    </qemu:device>\n" % i for i in range(len(self.interfaces))))

    def define(self):
        # libvirt appends to the domain's log across runs: this run's part starts here.
        try:
            self._log_offset = os.path.getsize(self._log_path())
        except OSError:
            self._log_offset = 0
        path = os.path.join(self.dir, "domain.xml")
        with open(path, "w") as f:
            f.write(self.xml())
        virsh("define", path)

    def start(self):
        """virsh start, then opens the serial console's pty."""
        self._close_console()
        self._started_at = time.monotonic()
        virsh("start", self.domain)
        self._boots += 1
        pty = virsh("ttyconsole", self.domain).strip()
        if not pty.startswith("/dev/"):
            raise LibvirtError("%s: no console pty (%r)" % (self.domain, pty))
        fd = os.open(pty, os.O_RDWR | os.O_NOCTTY)
        tty.setraw(fd)
        self._fd = fd
        reader = io.BufferedReader(_PtyReader(fd))
        writer = self._writer = os.fdopen(os.dup(fd), "wb", buffering=0)
        self.console = GuestConsole(
            reader, writer, os.path.join(self.dir, "pty-%d.log" % self._boots))

    def wait_ready(self, timeout=BOOT_TIMEOUT):
        try:
            self.console.wait_for(r"^VHU-GUEST-READY", timeout)
            errors = re.findall(r"^VHU-ERROR.*$", self.console.text, re.M)
            if errors:
                raise ConsoleError("guest setup failed: " + "; ".join(errors))
            self.console.sync(timeout)
        except ConsoleError as e:
            raise ConsoleError("%s boot: %s\nQEMU's log:\n%s"
                               % (self.name, e, self.qemu_log()[-3000:])) from None
        self.boot_seconds = time.monotonic() - self._started_at
        return self.boot_seconds

    def _log_path(self):
        return "/var/log/libvirt/qemu/%s.log" % self.domain

    def qemu_log(self):
        """What libvirt logged of this guest's QEMUs (command lines, messages)."""
        try:
            with open(self._log_path(), errors="replace") as f:
                f.seek(getattr(self, "_log_offset", 0))
                return f.read()
        except OSError as e:
            return "(%s)" % e

    def qemu_credentials(self):
        """QEMU's user, group and supplementary groups, as names."""
        with open("/proc/%d/status" % self.qemu_pid()) as f:
            status = dict(line.split(":", 1) for line in f if ":" in line)
        return (pwd.getpwuid(int(status["Uid"].split()[0])).pw_name,
                grp.getgrgid(int(status["Gid"].split()[0])).gr_name,
                sorted(grp.getgrgid(int(g)).gr_name for g in status["Groups"].split()))

    def run(self, command, timeout=30, check=True):
        return self.console.run(command, timeout=timeout, check=check)

    def interface_stats(self, iface):
        out = self.run("cd /sys/class/net/%s/statistics && grep -H . *" % iface)
        stats = {}
        for line in out.splitlines():
            key, _, value = line.partition(":")
            if value.strip().isdigit():
                stats[key] = int(value)
        return stats

    def state(self):
        return virsh("domstate", self.domain, check=False).strip()

    def is_running(self):
        return self.state() == "running"

    def qemu_pid(self):
        with open("/run/libvirt/qemu/%s.pid" % self.domain) as f:
            return int(f.read())

    def destroy(self):
        if self.is_running():
            virsh("destroy", self.domain)
        self._close_console()

    # For the harness of tests/guests (OvsGuestTest): a guest is "killed".
    def kill(self):
        self.destroy()

    def undefine(self):
        self.destroy()
        virsh("undefine", self.domain, check=False)

    def _close_console(self):
        if self.console is not None:
            # QEMU is gone: the reader has seen EIO, or sees it now.
            self.console.close()
            self.console = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def remove_leftover_domains():
    """Destroys and undefines domains of an earlier run that was killed."""
    for name in virsh("list", "--all", "--name", check=False).split():
        if name.startswith(DOMAIN_PREFIX):
            virsh("destroy", name, check=False)
            virsh("undefine", name, check=False)


def _start_time(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _reap(argv):
    """--reap PID [--pid=DAEMON]... [--nr-hugepages=N]: waits for PID to end, then
    cleans up after it (LibvirtDaemon.start_reaper)."""
    parent = int(argv[0])
    daemons = [int(a.split("=", 1)[1]) for a in argv[1:] if a.startswith("--pid=")]
    pages = [a.split("=", 1)[1] for a in argv[1:] if a.startswith("--nr-hugepages=")]
    started = _start_time(parent)
    while started is not None and _start_time(parent) == started:
        time.sleep(1)
    remove_leftover_domains()
    for pid in daemons:
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            pass
    if pages:
        with open(HugePages.NR, "w") as f:
            f.write(pages[0])


if __name__ == "__main__" and sys.argv[1:2] == ["--reap"]:
    _reap(sys.argv[2:])
