"""Install test of the Debian package on this machine, beside Debian's Open vSwitch.

Builds openvswitch-switch-vhostuser (utilities/build-packages), installs it, checks that
installing did not change which ovs-vswitchd runs, selects ours with update-alternatives,
starts ovsdb-server and ovs-vswitchd the way Debian does (ovs-ctl start, as
/etc/init.d/openvswitch-switch runs it), prepares the socket directory with the packaged
ovs-vhostuser-setup-sockdir, adds a netdev bridge with two dpdkvhostuser ports, and
runs DPDK testpmd "VMs" on them: A (txonly) into vhu0, the bridge to vhu1, B (rxonly).
It checks that the statistics move, then stops OVS, purges the package and checks that
the previous alternative is back and no file of the package is left.

The machine is left as it was found: the OVS it started is stopped, and the state OVS
writes (/etc/openvswitch, /var/lib/openvswitch, /var/log/openvswitch, the run
directory) is put back as it was.  It refuses to run (skips) when the system's OVS is
running or the package is already installed, and takes a lock so that two runs on one
machine do not overlap.

Needs root, Debian's openvswitch-switch, dpdk-testpmd and the packaging tools
(utilities/install-package-deps.sh).  As it changes the machine for a few minutes, it
runs only when asked: VHU_PACKAGE_TEST=1, or in CI (CI set, as .ci/run's environment has
it); otherwise it skips (exit 77 for ctest).  Asked for, it fails when it cannot run.

Environment:
    VHU_PACKAGE_TEST=1  run (otherwise skipped, unless CI is set)
    OVS_VHOSTUSER_DEB   an already built .deb to test instead of building one
    OVS_VHOSTUSER_SRC   the source tree to build from (default: this file's tree)

Run by ctest (label "package"):
    VHU_PACKAGE_TEST=1 utilities/run-tests -L package
or by hand, as root:
    VHU_PACKAGE_TEST=1 /usr/bin/python3 -B tests/package/test_deb_install.py
"""

import fcntl
import glob
import os
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("OVS_VHOSTUSER_SRC", os.path.normpath(os.path.join(HERE, "..", "..")))
sys.path.insert(0, os.path.join(SRC, "tests", "peers"))
from testpmd import TestPmd  # noqa: E402

PKG = "openvswitch-switch-vhostuser"
OURS = "/usr/lib/openvswitch-vhostuser/ovs-vswitchd-vhostuser"
DEBIANS = "/usr/lib/openvswitch-switch/ovs-vswitchd"
OVS_CTL = "/usr/share/openvswitch/scripts/ovs-ctl"
RUNDIR = "/var/run/openvswitch"
STATE_DIRS = ("/etc/openvswitch", "/var/lib/openvswitch", "/var/log/openvswitch")
BRIDGE = "brvhupkg"          # a tap device of this name exists while the test runs
SOCK_DIR = "vhost-sockets"   # other_config:vhost-sock-dir
LOCK = "/run/lock/ovs-vhostuser-package-test.lock"
APT_LOCK_WAIT = ["-o", "DPkg::Lock::Timeout=300"]


def run(*argv, check=True, env=None, timeout=600, input=None):
    """Runs a command, echoing it; returns its stdout.  Raises with its output on
    failure when 'check'."""
    print("+ " + " ".join(argv), flush=True)
    p = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout,
                       input=input)
    if check and p.returncode != 0:
        raise AssertionError("%s exited %d\nstdout:\n%s\nstderr:\n%s"
                             % (" ".join(argv), p.returncode, p.stdout[-4000:],
                                p.stderr[-4000:]))
    return p.stdout


def alternative():
    """(status, value, {path: priority}) of the ovs-vswitchd link group."""
    out = run("update-alternatives", "--query", "ovs-vswitchd")
    status = value = None
    alts = {}
    path = None
    for line in out.splitlines():
        key, _, val = line.partition(": ")
        if key == "Status":
            status = val
        elif key == "Value":
            value = val
        elif key == "Alternative":
            path = val
        elif key == "Priority" and path:
            alts[path] = int(val)
    return status, value, alts


def daemon_running(name):
    pidfile = os.path.join(RUNDIR, name + ".pid")
    try:
        with open(pidfile) as f:
            pid = int(f.read().strip())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def requested():
    return os.environ.get("VHU_PACKAGE_TEST") == "1" or bool(os.environ.get("CI"))


def skip_reason():
    """Why this machine cannot run the test, or None.  Once the test is asked for
    (VHU_PACKAGE_TEST=1, or CI), any reason is a failure, not a skip: ctest counts a
    skip as a pass, and CI would go green without the package ever installed."""
    if os.geteuid() != 0:
        return "needs root"
    for tool in ("dpkg-buildpackage", "dpdk-testpmd", "ovs-vsctl", "update-alternatives"):
        if not shutil.which(tool):
            return "no %s (utilities/install-deps.sh, utilities/install-package-deps.sh)" % tool
    if not os.path.exists(OVS_CTL) or not os.path.exists(DEBIANS):
        return "Debian's openvswitch-switch is not installed"
    status = subprocess.run(["dpkg-query", "-W", "-f=${Status}", PKG],
                            capture_output=True, text=True).stdout
    if "installed" in status and "not-installed" not in status:
        return "%s is already installed here: not touching it" % PKG
    if daemon_running("ovsdb-server") or daemon_running("ovs-vswitchd"):
        return "the system's Open vSwitch is running: not touching it"
    if os.environ.get("OVS_VHOSTUSER_DEB") is None:
        if subprocess.run(["dpkg-checkbuilddeps", os.path.join(SRC, "debian", "control")],
                          capture_output=True).returncode != 0:
            return "build dependencies missing (utilities/install-package-deps.sh)"
    return None


def close_pipes(vm):
    for pipe in (vm.proc.stdin, vm.proc.stdout):
        if pipe:
            pipe.close()


class MachineState:
    """What this test may change, recorded before and put back after."""

    def __init__(self, workdir):
        self.snapshot = os.path.join(workdir, "state.tar")
        self.had_rundir = os.path.isdir(RUNDIR)
        self.alternative = alternative()
        with tarfile.open(self.snapshot, "w") as tar:
            for d in STATE_DIRS:
                if os.path.lexists(d):
                    tar.add(d)
        self.existing = {d: os.path.lexists(d) for d in STATE_DIRS}

    def restore(self):
        for d in STATE_DIRS:
            if os.path.lexists(d):
                shutil.rmtree(d)
        with tarfile.open(self.snapshot) as tar:
            tar.extractall("/", numeric_owner=True)
        if not self.had_rundir and os.path.isdir(RUNDIR):
            shutil.rmtree(RUNDIR)


class DebInstallTest(unittest.TestCase):
    def setUp(self):
        if not requested():
            self.skipTest("changes the machine's packages and starts its OVS for a few "
                          "minutes: runs when VHU_PACKAGE_TEST=1 or in CI")
        reason = skip_reason()
        if reason:
            self.fail("asked for (VHU_PACKAGE_TEST=1 or CI), but cannot run: " + reason)
        os.makedirs(os.path.dirname(LOCK), exist_ok=True)
        self.lock = open(LOCK, "w")
        fcntl.flock(self.lock, fcntl.LOCK_EX)
        self.workdir = tempfile.mkdtemp(prefix="ovs-vhu-package-")
        self.vms = []
        self.installed = False
        self.ovs_started = False
        self.state = None
        self.timings = {}
        self.passed = False   # set by the test's last line

    def tearDown(self):
        if not hasattr(self, "workdir"):
            return
        for vm in self.vms:
            vm.kill()
            close_pipes(vm)
        if self.ovs_started:
            self.stop_ovs()
        if self.installed:
            run("apt-get", "purge", "-y", "-qq", *APT_LOCK_WAIT, PKG, check=False)
        if self.state:
            # OVS's logs of this run go with the test's; then the state as it was.
            for log in glob.glob("/var/log/openvswitch/*.log"):
                shutil.copy(log, self.workdir)
            self.state.restore()
        self.lock.close()
        print("timings: " + ", ".join("%s %.0f s" % kv for kv in self.timings.items()))
        if not self.passed:
            print("work directory (logs, packages): " + self.workdir)
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def timed(self, name, start):
        self.timings[name] = time.time() - start

    def build_deb(self):
        deb = os.environ.get("OVS_VHOSTUSER_DEB")
        if deb:
            return deb
        t0 = time.time()
        out = os.path.join(self.workdir, "packages")
        env = dict(os.environ)
        # The unit tests run in the suite anyway; the package build skips them.
        env["DEB_BUILD_OPTIONS"] = (env.get("DEB_BUILD_OPTIONS", "") + " nocheck").strip()
        run(os.path.join(SRC, "utilities", "build-packages"), "--deb-only",
            "--output", out, env=env, timeout=1500)
        self.timed("build", t0)
        debs = glob.glob(os.path.join(out, PKG + "_*.deb"))
        self.assertEqual(len(debs), 1, debs)
        return debs[0]

    def vsctl(self, *args):
        return run("ovs-vsctl", "--timeout=30", *args).strip()

    def stop_ovs(self):
        run(OVS_CTL, "stop", check=False)
        self.ovs_started = False
        for name in ("ovs-vswitchd", "ovsdb-server"):
            deadline = time.time() + 15
            while daemon_running(name) and time.time() < deadline:
                time.sleep(0.2)
            self.assertIsNone(daemon_running(name), name + " still running after ovs-ctl stop")

    def stats(self, port):
        out = self.vsctl("get", "Interface", port, "statistics")
        pairs = out.strip("{}").split(", ")
        return {k: int(v) for k, v in (p.split("=") for p in pairs if "=" in p)}

    def wait_for(self, predicate, what, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if predicate():
                return
            time.sleep(0.5)
        self.fail("timed out waiting for " + what)

    def test_install_select_traffic_purge(self):
        deb = self.build_deb()
        files = run("dpkg-deb", "--contents", deb)
        self.assertIn("." + OURS, files)
        self.assertIn("./usr/sbin/ovs-vhostuser-setup-sockdir", files)
        self.assertIn("./usr/share/man/man7/ovs-vhostuser.7.gz", files)
        # The documents keep the names the man page and README.Debian give them.
        for doc in ("README.md", "ovsdb-schema/vhostuser.xml", "utilities/openstack.md",
                    "copyright.openvswitch"):
            self.assertIn("./usr/share/doc/%s/%s\n" % (PKG, doc), files + "\n")
        # The OVS code the daemon embeds: named, and no older OVS installed beside it.
        source = run("dpkg-query", "-W", "-f=${source:Version}", "openvswitch-source")
        upstream = source.split(":")[-1].rsplit("-", 1)[0]
        self.assertEqual(run("dpkg-deb", "--field", deb, "Built-Using").strip(),
                         "openvswitch (= %s)" % source)
        self.assertIn("openvswitch-switch (>= %s)" % upstream,
                      run("dpkg-deb", "--field", deb, "Depends"))

        self.state = MachineState(self.workdir)
        before_status, before_value, before_alts = self.state.alternative
        self.assertEqual(before_alts.get(DEBIANS), 100, "openvswitch-switch's alternative")
        self.assertNotIn(OURS, before_alts)

        # Install beside Debian's openvswitch-switch: registered, not selected.
        t0 = time.time()
        self.installed = True
        run("apt-get", "install", "-y", "-qq", "--no-install-recommends", *APT_LOCK_WAIT,
            os.path.abspath(deb))
        self.timed("install", t0)
        status, value, alts = alternative()
        self.assertEqual(alts.get(OURS), 40, "our alternative and its priority")
        self.assertEqual((status, value), (before_status, before_value),
                         "installing must not change which ovs-vswitchd runs")
        our_files = [line for line in run("dpkg", "-L", PKG).splitlines()
                     if os.path.isfile(line)]

        # Select ours and start OVS as Debian's init script does.  With umask 0022, as a
        # root shell usually has: our daemon gives dpdkvhostuser sockets mode 0660
        # (other_config:vhost-sock-mode) and the directory's group whatever its umask,
        # and QEMU's group must still be able to connect (checked below).
        run("update-alternatives", "--set", "ovs-vswitchd", OURS)
        self.assertEqual(os.path.realpath("/usr/sbin/ovs-vswitchd"), OURS)
        t0 = time.time()
        self.ovs_started = True
        run("sh", "-c", "umask 0022 && exec %s start --system-id=random "
            "--no-record-hostname" % OVS_CTL)
        pid = daemon_running("ovs-vswitchd")
        self.assertIsNotNone(pid, "ovs-vswitchd is not running after ovs-ctl start")
        self.assertEqual(os.readlink("/proc/%d/exe" % pid), OURS)
        self.timed("start", t0)
        iface_types = self.vsctl("get", "Open_vSwitch", ".", "iface_types")
        self.assertIn("dpdkvhostuser", iface_types)
        self.assertIn("dpdkvhostuserclient", iface_types)

        # The socket directory, with the packaged helper; the group stands in for QEMU's.
        group = "kvm" if run("getent", "group", "kvm", check=False) else "nogroup"
        gid = int(run("getent", "group", group).split(":")[2])
        self.vsctl("set", "Open_vSwitch", ".", "other_config:pmd-cpu-mask=0x1")
        out = run("/usr/sbin/ovs-vhostuser-setup-sockdir", "--group", group,
                  "--dir", SOCK_DIR)
        sock_dir = os.path.join(RUNDIR, SOCK_DIR)
        self.assertIn("vhostuser_socket_dir = " + sock_dir, out)
        # root:<group>, set-group-ID and sticky: the group cannot replace our sockets.
        st = os.stat(sock_dir)
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o3775, sock_dir + " mode")
        self.assertEqual((st.st_uid, st.st_gid), (0, gid), sock_dir + " owner")

        t0 = time.time()
        self.vsctl("add-br", BRIDGE, "--", "set", "Bridge", BRIDGE, "datapath_type=netdev")
        for i in (0, 1):
            self.vsctl("add-port", BRIDGE, "vhu%d" % i, "--", "set", "Interface",
                       "vhu%d" % i, "type=dpdkvhostuser", "ofport_request=%d" % (i + 1))
        run("ovs-ofctl", "del-flows", BRIDGE)
        run("ovs-ofctl", "add-flow", BRIDGE, "in_port=1,actions=output:2")
        socks = [os.path.join(sock_dir, "vhu%d" % i) for i in (0, 1)]
        self.wait_for(lambda: all(os.path.exists(s) for s in socks), "the sockets")
        for s in socks:
            st = os.stat(s)
            self.assertEqual(st.st_gid, gid, s + " is not in group " + group)
            self.assertEqual(stat.S_IMODE(st.st_mode), 0o660, s + " mode (vhost-sock-mode)")
        # An unprivileged process in that group (as QEMU would be) may connect.
        probe = ("import socket,sys; s=socket.socket(socket.AF_UNIX); "
                 "s.connect(sys.argv[1]); print('connected')")
        out = run("setpriv", "--reuid=65534", "--regid=%d" % gid, "--clear-groups",
                  "/usr/bin/python3", "-c", probe, socks[1])
        self.assertIn("connected", out)
        run("/usr/sbin/ovs-vhostuser-setup-sockdir", "--check", "--group", group,
            "--dir", SOCK_DIR)

        # The VMs: B receives on vhu1, A sends into vhu0.
        b = TestPmd([socks[1]], forward_mode="rxonly", file_prefix="pkg-b-%d" % os.getpid(),
                    log_path=os.path.join(self.workdir, "testpmd-b.log"))
        self.vms.append(b)
        a = TestPmd([socks[0]], forward_mode="txonly", file_prefix="pkg-a-%d" % os.getpid(),
                    log_path=os.path.join(self.workdir, "testpmd-a.log"))
        self.vms.append(a)
        for vm in (a, b):
            vm.wait_ready()
            vm.wait_link_up()
        for port in ("vhu0", "vhu1"):
            self.wait_for(lambda: self.vsctl("get", "Interface", port, "link_state") == "up",
                          port + " link up")
            self.assertIn('status=connected',
                          self.vsctl("get", "Interface", port, "status"))
        first = self.stats("vhu0")
        b.command("start")
        a.command("start")
        # ovs-vswitchd writes statistics to the database every 5 s.
        self.wait_for(lambda: self.stats("vhu0").get("rx_packets", 0)
                      > first.get("rx_packets", 0) + 1000, "vhu0 rx_packets to move", 20)
        self.wait_for(lambda: self.stats("vhu1").get("tx_packets", 0) > 1000,
                      "vhu1 tx_packets to move", 20)
        a.command("stop")
        time.sleep(1)
        b.command("stop")
        a_sent = a.port_stats()[0]["tx"]
        b_got = b.port_stats()[0]["rx"]
        print("A sent %d, B received %d; vhu0 %s; vhu1 %s"
              % (a_sent, b_got, self.stats("vhu0"), self.stats("vhu1")))
        self.assertGreater(a_sent, 1000)
        self.assertGreater(b_got, 1000)
        self.timed("traffic", t0)
        for vm in (a, b):
            vm.quit()
            close_pipes(vm)
        self.vms = []

        # Stop OVS, purge, and check that nothing of ours is left.
        t0 = time.time()
        self.vsctl("del-br", BRIDGE)
        self.stop_ovs()
        print("+ apt-get purge " + PKG, flush=True)
        purge = subprocess.run(["apt-get", "purge", "-y", "-qq", *APT_LOCK_WAIT, PKG],
                               capture_output=True, text=True, timeout=600)
        self.assertEqual(purge.returncode, 0, purge.stdout + purge.stderr)
        self.installed = False
        # Our daemon was the one selected: removing it says what that means.
        self.assertIn("goes back to Debian's daemon", purge.stdout + purge.stderr)
        self.timed("stop and purge", t0)
        status, value, alts = alternative()
        self.assertNotIn(OURS, alts)
        self.assertEqual(value, before_value, "the previous ovs-vswitchd is not back")
        if before_status == "auto":
            self.assertEqual(status, "auto")
        self.assertEqual(os.path.realpath("/usr/sbin/ovs-vswitchd"), before_value)
        left = [f for f in our_files if os.path.lexists(f)]
        self.assertEqual(left, [], "files of the package left after purge")
        self.assertFalse(os.path.exists(os.path.dirname(OURS)))
        status = subprocess.run(["dpkg-query", "-W", "-f=${Status}", PKG],
                                capture_output=True, text=True).stdout
        self.assertNotIn(" installed", status.replace("not-installed", ""),
                         "dpkg still knows the package: " + status)
        self.passed = True


def main():
    result = unittest.main(exit=False, verbosity=2).result
    if result.testsRun and len(result.skipped) == result.testsRun:
        sys.exit(77)   # ctest: SKIP_RETURN_CODE
    sys.exit(0 if result.wasSuccessful() else 1)


if __name__ == "__main__":
    main()
