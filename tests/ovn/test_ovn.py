"""OVN across two hypervisors on one machine, with our ovs-vswitchd on both.

What an ML2/OVN compute node with our daemon looks like, built from the real
components (Debian's ovn-central and ovn-host, OVN 23.03):

  - OVN central: the Northbound and Southbound ovsdb-servers and ovn-northd, on unix
    sockets in a private directory;
  - two chassis, "a" and "b", each a network namespace of its own with an
    ovsdb-server, our ovs-vswitchd (tests/integration/ovs_sandbox.py) and
    ovn-controller;
  - the underlay: a veth pair, one end in each namespace, added to a netdev bridge
    br-phy as an AF_XDP port (type=afxdp; generic or native XDP), with the tunnel endpoint's
    address on br-phy's internal port, as OVS's userspace tunneling guide does with a
    NIC; ovn-controller builds Geneve tunnels between the chassis on br-int (netdev,
    from ovn-bridge-datapath-type), so encapsulation and decapsulation happen in the
    userspace datapath;
  - one logical switch with two ports: a guest on chassis a on a dpdkvhostuser port, a
    guest on chassis b on a dpdkvhostuserclient port (QEMU listens), each bound with
    external_ids:iface-id, as os-vif plugs them.

The test checks that the Chassis records carry what Neutron's OVN driver reads to
bind ports as vhost-user (other_config datapath-type=netdev, iface-types with
dpdkvhostuser and dpdkvhostuserclient), that the guests ping each other both ways,
that a fixed-count flood each way (busybox ping -A) crosses the tunnels without a loss,
and that each guest's eth0 counters equal its port's Interface:statistics exactly.

Namespaces and veths carry the test's pid in their names (vhuovn-PID-a, vhuovnPIDa);
they go at the end of the test whatever happens, and a run removes those of runs that
were killed before they could.  Every daemon dies with the test (parent-death signal).

Run by ctest (label ovn); by hand, from tests/ovn/:
    OVS_VHOSTUSER_DAEMON=../../build/bin/ovs-vswitchd-vhostuser /usr/bin/python3 -B \\
        -m unittest -v test_ovn
VHU_KEEP_LOGS=1 keeps the directory (all daemons' logs, guest consoles) of a passing
run; a failing one always keeps it.
"""

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import types
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
sys.path.insert(0, os.path.join(HERE, "..", "guests"))
from ovs_sandbox import OvsSandbox, SandboxError, _die_with_parent  # noqa: E402
from qemu_guest import VhostUserNic  # noqa: E402
import test_ovs_guests  # noqa: E402
from test_ovs_guests import PMD_MAXSLEEP_US, daemon_path, port_stats  # noqa: E402

NAME_PREFIX = "vhuovn"
OVN_SCHEMAS = "/usr/share/ovn"
OVN_TOOLS = ("ovn-northd", "ovn-controller", "ovn-nbctl", "ovn-sbctl", "ovn-appctl")

# The underlay: one /24, the tunnel endpoints on br-phy's internal port.
UNDERLAY_PREFIX = "172.31.250."
# Neutron's default MTU for a Geneve network on a 1500-byte underlay: 1500 minus the
# outer IPv4 (20), UDP (8), Geneve with OVN's 8-byte option (16) and the inner
# Ethernet header (14).
GUEST_MTU = 1442
# Echo requests each way in the flood: as fast as the replies come (ping -A).
FLOOD_COUNT = 1000
FLOOD_SIZE = 1000

# The underlay ports' XDP mode (OVS's options:xdp-mode): the kernel's generic XDP,
# which any device has, or VHU_OVN_XDP_MODE=native (veth's own XDP support, as with a
# NIC whose driver has XDP).  ctest runs both.
XDP_MODE = os.environ.get("VHU_OVN_XDP_MODE", "generic")

CHASSIS = {
    # name: (guest ip suffix, guest MAC, port type, PMD CPU mask)
    "a": (1, "fa:16:3e:00:00:0a", "dpdkvhostuser", "0x1"),
    "b": (2, "fa:16:3e:00:00:0b", "dpdkvhostuserclient", "0x2"),
}


def _run(argv, timeout=30, check=True, env=None):
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                            env=env)
    if check and result.returncode:
        raise SandboxError("%s: exit status %d: %s%s" % (
            " ".join(argv), result.returncode, result.stdout, result.stderr))
    return result.stdout


def _test_alive(pid):
    """Whether `pid` is still a run of this test (namespaces of others are left
    alone)."""
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return b"test_ovn" in f.read()
    except OSError:
        return False


def _kill_netns_processes(netns):
    for pid in _run(["ip", "netns", "pids", netns], check=False).split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (OSError, ValueError):
            pass


def remove_leftovers():
    """Namespaces and veths of earlier runs that were killed before their cleanup
    (their pid, in the names, is no longer a run of this test)."""
    removed = []
    for line in _run(["ip", "netns", "list"], check=False).splitlines():
        name = line.split()[0] if line.split() else ""
        m = re.match(r"%s-(\d+)-[a-z]$" % NAME_PREFIX, name)
        if m and not _test_alive(int(m.group(1))):
            _kill_netns_processes(name)
            _run(["ip", "netns", "delete", name], check=False)
            removed.append(name)
    for line in _run(["ip", "-o", "link", "show"], check=False).splitlines():
        m = re.match(r"\d+: (%s(\d+)[a-z])[@:]" % NAME_PREFIX, line)
        if m and not _test_alive(int(m.group(2))):
            _run(["ip", "link", "delete", m.group(1)], check=False)
            removed.append(m.group(1))
    return removed


class Daemons:
    """Processes started in the foreground as our children, with their logs in one
    directory; stop() asks each to exit through its control socket and checks its
    exit status."""

    def __init__(self, root, env=None):
        self.root = root
        self.env = env
        self.processes = []  # (name, Popen, control socket: "{pid}" is the pid's)

    def spawn(self, name, argv, control):
        stderr = open(os.path.join(self.root, name + ".stderr"), "w")
        try:
            process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=stderr,
                                       stderr=stderr, cwd=self.root, env=self.env,
                                       preexec_fn=_die_with_parent)
        finally:
            stderr.close()
        self.processes.append((name, process, control))
        return process

    def exited(self):
        """A message for each daemon that has exited."""
        return ["%s exited with status %d" % (name, process.returncode)
                for name, process, _ in self.processes if process.poll() is not None]

    def wait_for(self, predicate, what, timeout=30):
        deadline = time.monotonic() + timeout
        while not predicate():
            if self.exited():
                raise SandboxError("gave up waiting for %s: %s"
                                   % (what, "; ".join(self.exited())))
            if time.monotonic() > deadline:
                raise SandboxError("gave up waiting for %s" % what)
            time.sleep(0.1)

    def stop(self):
        """Stops them in the reverse order of their start; raises if one does not
        exit cleanly."""
        problems = []
        while self.processes:
            name, process, control = self.processes.pop()
            if process.poll() is not None:
                problems.append("%s had exited with status %d" % (name,
                                                                   process.returncode))
                continue
            _run(["ovs-appctl", "--timeout=10", "-t",
                  control.format(pid=process.pid), "exit"], check=False)
            try:
                status = process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                problems.append("%s did not exit when asked" % name)
                continue
            if status:
                problems.append("%s exited with status %d" % (name, status))
        if problems:
            raise SandboxError("; ".join(problems))

    def kill(self):
        for _, process, _ in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait()
        self.processes = []


class OvnCentral:
    """NB and SB ovsdb-servers and ovn-northd, on unix sockets in `root`."""

    def __init__(self, root):
        self.root = root
        os.makedirs(root, exist_ok=True)
        self.nb_sock = os.path.join(root, "nb.sock")
        self.sb_sock = os.path.join(root, "sb.sock")
        self.daemons = Daemons(root)

    def start(self):
        for db in ("nb", "sb"):
            path = os.path.join(self.root, db + ".db")
            _run(["ovsdb-tool", "create", path,
                  os.path.join(OVN_SCHEMAS, "ovn-%s.ovsschema" % db)])
            self.daemons.spawn(
                "ovsdb-server-" + db,
                ["ovsdb-server", path, "--remote=punix:" + self.sock(db),
                 "--pidfile=%s/%s.pid" % (self.root, db),
                 "--unixctl=%s/%s.ctl" % (self.root, db),
                 "--log-file=%s/ovsdb-server-%s.log" % (self.root, db),
                 "--no-chdir", "-vconsole:err"],
                os.path.join(self.root, db + ".ctl"))
        self.daemons.wait_for(lambda: all(os.path.exists(self.sock(db))
                                          for db in ("nb", "sb")),
                              "the NB and SB sockets")
        self.daemons.spawn(
            "ovn-northd",
            ["ovn-northd", "--ovnnb-db=unix:" + self.nb_sock,
             "--ovnsb-db=unix:" + self.sb_sock,
             "--pidfile=%s/ovn-northd.pid" % self.root,
             "--unixctl=%s/ovn-northd.ctl" % self.root,
             "--log-file=%s/ovn-northd.log" % self.root, "--no-chdir", "-vconsole:err"],
            os.path.join(self.root, "ovn-northd.ctl"))
        self.nbctl("--wait=sb", "sync", timeout=30)

    def sock(self, db):
        return self.nb_sock if db == "nb" else self.sb_sock

    def nbctl(self, *args, timeout=30):
        return _run(["ovn-nbctl", "--db=unix:" + self.nb_sock, "--timeout=%d" % timeout,
                     *args], timeout=timeout + 5).strip()

    def sbctl(self, *args, timeout=30):
        return _run(["ovn-sbctl", "--db=unix:" + self.sb_sock, "--timeout=%d" % timeout,
                     *args], timeout=timeout + 5).strip()

    def chassis(self):
        """{name: {column: value}} of the SB Chassis records, maps as dicts."""
        out = json.loads(self.sbctl("--format=json", "list", "Chassis"))
        records = {}
        for row in out["data"]:
            record = {}
            for column, value in zip(out["headings"], row):
                if isinstance(value, list) and value and value[0] == "map":
                    value = dict(value[1])
                record[column] = value
            records[record["name"]] = record
        return records


class Chassis:
    """A hypervisor: a network namespace with our ovs-vswitchd (and its ovsdb-server)
    and ovn-controller."""

    def __init__(self, name, root, netns, underlay_if, central):
        self.name = name
        self.root = root
        os.makedirs(root, exist_ok=True)
        self.netns = netns
        self.underlay_if = underlay_if
        self.central = central
        self.system_id = "chassis-" + name
        self.encap_ip = UNDERLAY_PREFIX + str(1 + "ab".index(name))
        self.guest_ip, self.guest_mac, self.port_type, pmd_mask = CHASSIS[name]
        self.port = "vm-" + name
        self.lsp = "lsp-vm-" + name
        self.ovs = OvsSandbox(daemon_path(), workdir=os.path.join(root, "ovs"),
                              other_config={"pmd-cpu-mask": pmd_mask,
                                            "pmd-maxsleep": PMD_MAXSLEEP_US},
                              netns=netns, keep=True)
        # ovn-controller has no --unixctl: its control socket is
        # $OVN_RUNDIR/ovn-controller.PID.ctl.  It finds the bridges' OpenFlow
        # sockets (br-int.mgmt) in $OVS_RUNDIR.
        self.controller = Daemons(root, env=dict(os.environ, OVN_RUNDIR=root,
                                                 OVS_RUNDIR=self.ovs.rundir))
        self.controller_ctl = os.path.join(root, "ovn-controller.{pid}.ctl")

    def ns(self, *argv, check=True):
        return _run(["ip", "netns", "exec", self.netns, *argv], check=check)

    def start_ovs(self):
        self.ovs.start()

    def setup_underlay(self):
        """br-phy (netdev) with the veth as an AF_XDP port and the tunnel endpoint's
        address on its internal port."""
        self.ovs.vsctl(
            "add-br", "br-phy", "--", "set", "Bridge", "br-phy", "datapath_type=netdev",
            "other-config:hwaddr=02:00:00:00:fa:0%d" % (1 + "ab".index(self.name)),
            "--", "add-port", "br-phy", self.underlay_if,
            "--", "set", "Interface", self.underlay_if, "type=afxdp",
            "options:xdp-mode=" + XDP_MODE)
        self.ns("ip", "addr", "add", self.encap_ip + "/24", "dev", "br-phy")
        self.ns("ip", "link", "set", "br-phy", "up")

    def start_controller(self):
        self.ovs.vsctl(
            "set", "Open_vSwitch", ".",
            "external_ids:system-id=" + self.system_id,
            "external_ids:hostname=" + self.system_id,
            "external_ids:ovn-remote=unix:" + self.central.sb_sock,
            "external_ids:ovn-encap-type=geneve",
            "external_ids:ovn-encap-ip=" + self.encap_ip,
            "external_ids:ovn-bridge-datapath-type=netdev")
        self.controller.spawn(
            "ovn-controller",
            ["ip", "netns", "exec", self.netns, "ovn-controller",
             "unix:" + self.ovs.db_socket,
             "--pidfile=%s/ovn-controller.pid" % self.root,
             "--log-file=%s/ovn-controller.log" % self.root, "--no-chdir",
             "-vconsole:err"],
            self.controller_ctl)

    def add_vm_port(self, server_path=None):
        args = ["add-port", "br-int", self.port, "--", "set", "Interface", self.port,
                "type=" + self.port_type, "external_ids:iface-id=" + self.lsp,
                "external_ids:attached-mac=" + self.guest_mac,
                "external_ids:iface-status=active"]
        if server_path:
            args.append("options:vhost-server-path=" + server_path)
        self.ovs.vsctl(*args)

    def stop(self):
        problems = []
        for stop in (self.controller.stop, self.ovs.stop):
            try:
                stop()
            except SandboxError as e:
                problems.append(str(e))
        if problems:
            raise SandboxError("chassis %s: %s" % (self.name, "; ".join(problems)))

    def kill(self):
        self.controller.kill()
        self.ovs.kill()

    def exited(self):
        problems = self.controller.exited()
        if self.ovs.vswitchd and self.ovs.vswitchd.poll() is not None:
            problems.append("ovs-vswitchd exited with status %d"
                            % self.ovs.vswitchd.returncode)
        return ["chassis %s: %s" % (self.name, p) for p in problems]

    def bad_log_lines(self):
        # OVS's AF_XDP port tries to raise RLIMIT_MEMLOCK, which it no longer needs
        # (the kernel charges BPF memory to the cgroup since Linux 5.11), and logs it
        # as an error where it may not.
        lines = [line for line in self.ovs.log_lines()
                 if "setrlimit(RLIMIT_MEMLOCK) failed" not in line]
        lines += self.ovs.log_lines(log=os.path.join(self.root, "ovn-controller.log"))
        return lines


class OvnTest(test_ovs_guests.OvsGuestTest):
    """The guest tests' helpers (boot, pings, counter comparisons); only the tests
    below are this module's (load_tests)."""

    def setUp(self):
        super().setUp()
        missing = [t for t in OVN_TOOLS if not shutil.which(t)]
        if missing:
            self.fail("%s missing: install ovn-central and ovn-host "
                      "(utilities/install-deps.sh)" % ", ".join(missing))

    @contextlib.contextmanager
    def topology(self):
        """Central, both chassis, their namespaces and the underlay; everything is
        taken down at the end, on success or failure."""
        removed = remove_leftovers()
        if removed:
            self.log("removed leftovers of killed runs: " + ", ".join(removed))
        keep = bool(os.environ.get("VHU_KEEP_LOGS"))
        root = tempfile.mkdtemp(prefix="ovn-vhu-", dir="/tmp")
        self.root = root
        pid = os.getpid()
        netns = {c: "%s-%d-%s" % (NAME_PREFIX, pid, c) for c in "ab"}
        veth = {c: "%s%d%s" % (NAME_PREFIX, pid, c) for c in "ab"}
        central = OvnCentral(os.path.join(root, "central"))
        chassis = {}
        self.central, self.chassis = central, chassis
        created = []
        ok = False
        try:
            for c in "ab":
                _run(["ip", "netns", "add", netns[c]])
                created.append(netns[c])
                self.ns_quiet(netns[c])
            _run(["ip", "link", "add", veth["a"], "netns", netns["a"], "type", "veth",
                  "peer", "name", veth["b"], "netns", netns["b"]])
            for c in "ab":
                _run(["ip", "-n", netns[c], "link", "set", veth[c], "up"])
                chassis[c] = Chassis(c, os.path.join(root, c), netns[c], veth[c],
                                     central)
            central.start()
            for c in "ab":
                chassis[c].start_ovs()
            self.log("central and both switches up in " + root)
            yield central, chassis["a"], chassis["b"]
            for c in "ab":
                self.assertEqual(chassis[c].bad_log_lines(), [],
                                 "errors in chassis %s's logs" % c)
            for guest in self.guests:
                guest.kill()
            self.guests = []
            for c in "ab":
                chassis[c].stop()
            central.daemons.stop()
            self.assertEqual(self.bad_lines(central), [], "errors in OVN central's logs")
            ok = True
        except BaseException:
            self.save_guest_dmesg(root)
            raise
        finally:
            for guest in self.guests:
                guest.kill()
            self.guests = []
            for c in chassis.values():
                if not ok:
                    c.ovs.dump_logs(30)
                c.kill()
            central.daemons.kill()
            for name in created:
                _kill_netns_processes(name)
                _run(["ip", "netns", "delete", name], check=False)
            # The veth pair went with the namespaces; one left in the host's
            # namespace (a failure between creating and moving it) goes here.
            for name in veth.values():
                _run(["ip", "link", "delete", name], check=False)
            if ok and not keep:
                shutil.rmtree(root, ignore_errors=True)
            else:
                print("test_ovn: kept %s for inspection" % root, file=sys.stderr)

    @staticmethod
    def bad_lines(central):
        lines = []
        for log in ("ovsdb-server-nb.log", "ovsdb-server-sb.log", "ovn-northd.log"):
            path = os.path.join(central.root, log)
            if os.path.exists(path):
                with open(path, errors="replace") as f:
                    lines += [l.rstrip() for l in f if "|ERR|" in l or "|EMER|" in l]
        return lines

    @staticmethod
    def ns_quiet(netns):
        """No IPv6 in the namespace: nothing but the test's traffic on the underlay."""
        _run(["ip", "netns", "exec", netns, "sysctl", "-qw",
              "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"])
        _run(["ip", "-n", netns, "link", "set", "lo", "up"])

    def wait(self, predicate, what, timeout=30):
        """Polls `predicate` until it returns something true, and returns that;
        fails at once if a daemon exits meanwhile."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            exited = self.central.daemons.exited()
            for ch in self.chassis.values():
                exited += ch.exited()
            if exited:
                self.fail("gave up waiting for %s: %s" % (what, "; ".join(exited)))
            if time.monotonic() > deadline:
                self.fail("gave up waiting for " + what)
            time.sleep(0.2)

    # ---- Shared by the tests (test_ovn_migration.py's too) ----

    def start_chassis(self, central, a, b):
        """The underlay and ovn-controller on both chassis; returns the Chassis
        records once both are in the Southbound database with their iface-types."""
        for ch in (a, b):
            ch.setup_underlay()
            ch.start_controller()
        return self.wait(
            lambda: (lambda r: r if {a.system_id, b.system_id} <= set(r)
                     and all("iface-types" in r[n]["other_config"] for n in r)
                     else None)(central.chassis()),
            "both Chassis records in the Southbound database")

    def add_logical_switch(self, central, chassis, options=None):
        """Logical switch ls0 with one port per chassis (its guest's), addresses and
        port security as Neutron sets them.  options: {lsp: {key: value}}, the
        ports' options (e.g. requested-chassis)."""
        ls = ["ls-add", "ls0"]
        for ch in chassis:
            address = "%s 10.0.0.%d" % (ch.guest_mac, ch.guest_ip)
            ls += ["--", "lsp-add", "ls0", ch.lsp,
                   "--", "lsp-set-addresses", ch.lsp, address,
                   "--", "lsp-set-port-security", ch.lsp, address]
            for key, value in (options or {}).get(ch.lsp, {}).items():
                ls += ["--", "set", "Logical_Switch_Port", ch.lsp,
                       "options:%s=%s" % (key, value)]
        central.nbctl(*ls)

    def binding_chassis(self, central, lsp, column="chassis"):
        """The names of the chassis in the SB Port_Binding's `column` (chassis,
        additional_chassis), sorted."""
        uuids = central.sbctl("--bare", "--columns=" + column, "find", "Port_Binding",
                              "logical_port=" + lsp).split()
        return sorted(central.sbctl("--bare", "--columns=name", "list", "Chassis", u)
                      for u in uuids)

    def wait_bound(self, central, ch, lsp, port):
        """The logical port is up (ovn-controller on `ch` claimed it through `port`
        and installed its flows) and bound to `ch` in the Southbound database."""
        self.wait(lambda: central.nbctl("get", "Logical_Switch_Port", lsp,
                                        "up") == "true",
                  "%s up in the Northbound database" % lsp)
        self.wait(lambda: ch.ovs.get("Interface", port,
                                     "external_ids:ovn-installed") == '"true"',
                  "ovn-installed on " + port)
        self.assertEqual(self.binding_chassis(central, lsp), [ch.system_id])

    def find_tunnels(self, a, b):
        """Each chassis' one Geneve port (ch.tunnel), towards the other."""
        for ch, other in ((a, b), (b, a)):
            geneve = ch.ovs.vsctl("--bare", "--columns=name", "find", "Interface",
                                  "type=geneve").split()
            self.assertEqual(len(geneve), 1, "%s's tunnel ports" % ch.name)
            ch.tunnel = geneve[0]
            self.assertEqual(ch.ovs.get("Interface", geneve[0], "options:remote_ip"),
                             '"%s"' % other.encap_ip)
        self.log("tunnel ports %s, %s" % (a.tunnel, b.tunnel))

    # ---- Tests ----

    def test_two_chassis_geneve(self):
        with self.topology() as (central, a, b):
            records = self.start_chassis(central, a, b)
            # Chassis records, as Neutron's OVN driver reads them.
            for ch in (a, b):
                record = records[ch.system_id]
                other = record["other_config"]
                self.log("Chassis %s: other_config %s; external_ids %s"
                         % (ch.system_id, other, record["external_ids"]))
                self.assertEqual(other.get("datapath-type"), "netdev")
                iface_types = other.get("iface-types", "").split(",")
                for kind in ("dpdkvhostuser", "dpdkvhostuserclient", "afxdp", "geneve"):
                    self.assertIn(kind, iface_types, "Chassis %s iface-types"
                                  % ch.system_id)
                encaps = central.sbctl("--bare", "--columns=type,ip", "find", "Encap",
                                       "chassis_name=" + ch.system_id).split()
                self.assertEqual(encaps, ["geneve", ch.encap_ip])
                self.assertEqual(ch.ovs.get("Bridge", "br-int", "datapath_type"),
                                 "netdev")

            self.add_logical_switch(central, (a, b))

            b_socket = os.path.join(b.root, "vm-b.sock")
            nics = {"a": VhostUserNic(os.path.join(a.ovs.rundir, a.port),
                                      mac=a.guest_mac),
                    "b": VhostUserNic(b_socket, qemu_listens=True, mac=b.guest_mac)}
            a.add_vm_port()
            b.add_vm_port(server_path=b_socket)
            ga, gb = self.boot(types.SimpleNamespace(root=self.root), [
                {"name": "vm-" + ch.name, "ip": ch.guest_ip, "mtu": GUEST_MTU,
                 "nics": [nics[ch.name]]} for ch in (a, b)])
            for guest in (ga, gb):
                self.wait_carrier(guest)
            for ch in (a, b):
                self.wait(lambda: ch.ovs.get("Interface", ch.port, "link_state") == "up",
                          "%s link up" % ch.port)
            # Bound: the logical ports are up (ovn-controller claimed them and
            # installed their flows) and every chassis has caught up.
            for ch in (a, b):
                self.wait_bound(central, ch, ch.lsp, ch.port)
            central.nbctl("--wait=hv", "sync")
            self.find_tunnels(a, b)

            # The first frames resolve the tunnel endpoint's MAC on the underlay (OVS
            # drops the frame that made it send the ARP request).
            self.ping_until_answered(ga, "10.0.0.2")
            self.assertPingOk(self.guest_ping(ga, "10.0.0.2", count=10), 10,
                              "vm-a pings vm-b")
            self.assertPingOk(self.guest_ping(gb, "10.0.0.1", count=10), 10,
                              "vm-b pings vm-a")
            self.assertPingOk(self.guest_ping(ga, "10.0.0.2", count=5,
                                              size=GUEST_MTU - 28), 5,
                              "vm-a pings vm-b, full frames")
            before = self.counters(a, ga, b, gb)

            # The flood, each way.
            for guest, peer in ((ga, "10.0.0.2"), (gb, "10.0.0.1")):
                started = time.monotonic()
                out = guest.run("ping -q -A -c %d -s %d -W 5 %s"
                                % (FLOOD_COUNT, FLOOD_SIZE, peer), check=False,
                                timeout=120)
                seconds = time.monotonic() - started
                result = parse_ping_summary(out)
                self.log("%s floods %s: %s in %.1f s" % (guest.name, peer, result,
                                                          seconds))
                self.assertEqual(result, (FLOOD_COUNT, FLOOD_COUNT),
                                 "%s's flood:\n%s" % (guest.name, out))
            after = self.counters(a, ga, b, gb)

            # Each guest sent FLOOD_COUNT requests and FLOOD_COUNT replies and received
            # as many, nothing else (ARP entries stay confirmed); so did its port, and
            # each AF_XDP underlay port carried them one for one, in Geneve.
            frames = 2 * FLOOD_COUNT
            frame_bytes = 14 + 20 + 8 + FLOOD_SIZE  # Ethernet, IPv4, ICMP, payload
            # Outer Ethernet, IPv4, UDP, Geneve with OVN's 8-byte option.
            tunnel_bytes = frame_bytes + 14 + 20 + 8 + 16
            expected = {"rx_packets": frames, "tx_packets": frames,
                        "rx_bytes": frames * frame_bytes,
                        "tx_bytes": frames * frame_bytes}
            for what in ("vm-a", "vm-b", "eth0 of vm-a", "eth0 of vm-b"):
                delta = {k: after[what][k] - before[what][k] for k in expected}
                self.assertEqual(delta, expected, what + " during the floods")
            for ch in (a, b):
                what = "%s (afxdp)" % ch.underlay_if
                delta = {k: after[what][k] - before[what][k] for k in expected}
                self.log("%s during the floods: %s, %.0f and %.0f bytes a frame"
                         % (what, delta, delta["rx_bytes"] / frames,
                            delta["tx_bytes"] / frames))
                self.assertEqual((delta["rx_packets"], delta["tx_packets"]),
                                 (frames, frames), what + " packets")
                # Bytes as the kernel counts them on the veth: the whole Geneve frame
                # with generic XDP; without the outer Ethernet header with native XDP
                # (veth's XDP path), as seen here.
                self.assertIn(delta["rx_bytes"], (frames * tunnel_bytes,
                                                  frames * (tunnel_bytes - 14)),
                              what + " rx_bytes")
                self.assertEqual(delta["tx_bytes"], delta["rx_bytes"],
                                 what + " tx_bytes")
                for counter in ("rx_dropped", "tx_dropped", "rx_errors", "tx_errors"):
                    self.assertEqual(after[what].get(counter, 0), 0,
                                     "%s %s" % (what, counter))
                self.log("%s (geneve): %s" % (
                    ch.tunnel, {k: v for k, v in port_stats(ch.ovs, ch.tunnel).items()
                                if v}))

    def counters(self, a, ga, b, gb):
        """Once both guests are quiet and the database has a snapshot in which each
        guest's eth0 equals its port's statistics exactly: {what: counters} of the
        guests' eth0, their ports and the underlay ports."""
        result = {}
        for ch, guest in ((a, ga), (b, gb)):
            ours = self.assertCountersAgree(ch.ovs, [(guest, ch.port)])[ch.port]
            result[ch.port] = ours
            result["eth0 of " + guest.name] = guest.interface_stats("eth0")
            result["%s (afxdp)" % ch.underlay_if] = port_stats(ch.ovs, ch.underlay_if)
            self.log("%s: %s" % (ch.port, {k: v for k, v in ours.items()
                                           if k in ("rx_packets", "tx_packets",
                                                    "rx_bytes", "tx_bytes")}))
        return result


def parse_ping_summary(output):
    m = re.search(r"(\d+) packets transmitted, (\d+) (?:packets )?received", output)
    return (int(m.group(1)), int(m.group(2))) if m else None


def load_tests(loader, tests, pattern):
    # OvnTest inherits the guest tests' scenarios with their helpers: not those.
    names = [n for n in dir(OvnTest) if n.startswith("test_") and n in vars(OvnTest)]
    return unittest.TestSuite(OvnTest(n) for n in names)


if __name__ == "__main__":
    unittest.main()
