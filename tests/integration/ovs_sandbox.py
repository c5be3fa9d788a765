"""A private Open vSwitch: ovsdb-server and our ovs-vswitchd in a directory of their own.

Everything OVS reads or writes lives under one temporary directory: the database, the
run directory (db.sock, pidfiles, control sockets, server-mode vhost-user sockets) and
the logs.  OVS finds them through OVS_RUNDIR, OVS_LOGDIR, OVS_DBDIR and OVS_SYSCONFDIR,
so the tools (ovs-vsctl, ovs-appctl, ovs-ofctl) run from here talk to this instance
and never to the system's OVS.

ovs-vswitchd runs in a network namespace of its own by default: a netdev bridge's local
port is a tap device, and a private namespace keeps those off the host and lets two
sandboxes both have a "br0".

Both daemons run in the foreground as our children (not --detach), so that their exit
status is known, and with a parent-death signal, so that they die with us even when
we are killed before we can clean up.

Usage:
    with OvsSandbox(daemon="build/bin/ovs-vswitchd-vhostuser") as ovs:
        ovs.vsctl("add-br", "br0", "--", "set", "Bridge", "br0",
                  "datapath_type=netdev")
        ...
        ovs.stop()   # optional: raises if a daemon does not exit cleanly

On an exception inside the block the sandbox prints the ends of both logs, keeps its
directory for inspection, and kills whatever still runs.

Standard library only: runs with Debian's /usr/bin/python3.
"""

import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

VSWITCH_SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"

# Log levels that mean something went wrong, in OVS's "time|seq|module|LEVEL|text".
BAD_LOG_LEVELS = ("EMER", "ERR")

_PR_SET_PDEATHSIG = 1


class SandboxError(Exception):
    """A daemon or tool of the sandbox misbehaved."""


def _die_with_parent():
    """preexec_fn: deliver SIGTERM to the child when the harness goes away."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def _tail(path, lines):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError as e:
        return f"({e})\n"


class OvsSandbox:
    """One ovsdb-server and one ovs-vswitchd sharing a private directory."""

    def __init__(self, daemon, workdir=None, other_config=None,
                 private_netns=True, keep=False, command_timeout=30, netns=None):
        """'daemon': path of the ovs-vswitchd to run (ours).
        'workdir': directory to use (created); default a fresh one under /tmp.
        'other_config': Open_vSwitch other_config to set before the switch starts,
            e.g. {"pmd-cpu-mask": "0x1"}.
        'keep': leave the directory behind even after a clean run.
        'command_timeout': seconds any single tool or wait may take.
        'netns': the name of an existing network namespace (ip netns) to run
            ovs-vswitchd in, instead of a private unnamed one; the caller owns it."""
        self.daemon = os.path.abspath(daemon)
        if not os.access(self.daemon, os.X_OK):
            raise SandboxError(f"{self.daemon} is not an executable")
        self.other_config = dict(other_config or {})
        self.private_netns = private_netns and os.geteuid() == 0
        self.netns = netns
        self.keep = keep
        self.command_timeout = command_timeout

        # Short: the run directory prefixes unix socket paths, which must fit in 108
        # bytes together with the port's name.
        self.root = (os.path.abspath(workdir) if workdir
                     else tempfile.mkdtemp(prefix="ovs-vhu-", dir="/tmp"))
        self.rundir = os.path.join(self.root, "run")
        self.logdir = os.path.join(self.root, "log")
        self.dbdir = os.path.join(self.root, "db")
        self.sysconfdir = os.path.join(self.root, "etc")
        self.db_path = os.path.join(self.dbdir, "conf.db")
        self.db_socket = os.path.join(self.rundir, "db.sock")
        self.vswitchd_log = os.path.join(self.logdir, "ovs-vswitchd.log")
        self.ovsdb_log = os.path.join(self.logdir, "ovsdb-server.log")

        self.env = dict(os.environ,
                        OVS_RUNDIR=self.rundir, OVS_LOGDIR=self.logdir,
                        OVS_DBDIR=self.dbdir, OVS_SYSCONFDIR=self.sysconfdir)
        self.ovsdb = None
        self.vswitchd = None

    # ---- Life cycle ----

    def __enter__(self):
        try:
            self.start()
        except BaseException:
            self._fail_cleanup()
            raise
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            try:
                self.stop()
            except BaseException:
                self._fail_cleanup()
                raise
            self.remove_workdir()
        else:
            self._fail_cleanup()
        return False

    def start(self):
        for d in (self.rundir, self.logdir, self.dbdir, self.sysconfdir):
            os.makedirs(d, exist_ok=True)
        self.run(["ovsdb-tool", "create", self.db_path, VSWITCH_SCHEMA])
        self.start_ovsdb()
        self.vsctl("--no-wait", "init")
        if self.other_config:
            self.vsctl("--no-wait", "set", "Open_vSwitch", ".",
                       *[f"other_config:{k}={v}" for k, v in self.other_config.items()])
        self.start_vswitchd()

    def start_ovsdb(self):
        self.ovsdb = self._spawn(
            ["ovsdb-server", self.db_path,
             f"--remote=punix:{self.db_socket}",
             "--remote=db:Open_vSwitch,Open_vSwitch,manager_options",
             "--pidfile", f"--log-file={self.ovsdb_log}", "--no-chdir",
             "-vconsole:err"],
            "ovsdb-server")
        self.wait_for(lambda: os.path.exists(self.db_socket),
                      "ovsdb-server to create db.sock", self.ovsdb)

    def start_vswitchd(self):
        # The log file has everything; stderr gets errors only, and whatever a crash
        # prints (sanitizers, abort messages).
        command = [self.daemon, f"unix:{self.db_socket}", "--pidfile",
                   f"--log-file={self.vswitchd_log}", "--no-chdir", "-vconsole:err"]
        if self.netns:
            command = ["ip", "netns", "exec", self.netns] + command
        elif self.private_netns:
            command = ["unshare", "--net", "--"] + command
        self.vswitchd = self._spawn(command, "ovs-vswitchd")
        # Up once it has answered on its control socket and applied the database's
        # configuration (it copies next_cfg to cur_cfg when done).
        self.wait_for(lambda: self._appctl_ok("ovs-vswitchd", "version"),
                      "ovs-vswitchd to answer ovs-appctl", self.vswitchd)
        self.wait_for(self._switch_caught_up,
                      "ovs-vswitchd to apply the configuration", self.vswitchd)

    def stop(self):
        """Stops both daemons with ovs-appctl exit and checks they exited with 0.
        Raises SandboxError if either did not."""
        problems = []
        if self.vswitchd:
            problems += self._stop_daemon(self.vswitchd, "ovs-vswitchd")
            self.vswitchd = None
        if self.ovsdb:
            problems += self._stop_daemon(self.ovsdb, "ovsdb-server")
            self.ovsdb = None
        if problems:
            raise SandboxError("; ".join(problems))

    def _stop_daemon(self, process, target):
        try:
            self.appctl(target, "exit")
        except SandboxError as e:
            return [f"ovs-appctl -t {target} exit failed: {e}"]
        try:
            status = process.wait(timeout=self.command_timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            return [f"{target} did not exit within {self.command_timeout} s of "
                    "ovs-appctl exit"]
        if status != 0:
            return [f"{target} exited with status {status}"]
        return []

    def _fail_cleanup(self):
        """After a failure: report, kill what runs, keep the directory."""
        self.dump_logs()
        self.kill()
        print(f"ovs_sandbox: kept {self.root} for inspection", file=sys.stderr)

    def kill(self):
        """Ends both daemons at once, without asking them nicely."""
        for process in (self.vswitchd, self.ovsdb):
            if process and process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        self.vswitchd = self.ovsdb = None

    def kill_vswitchd(self):
        """SIGKILLs ovs-vswitchd alone (a crash, as far as anyone can tell), leaving
        ovsdb-server and the database as they are; start_vswitchd() restarts it."""
        if self.vswitchd and self.vswitchd.poll() is None:
            self.vswitchd.kill()
            self.vswitchd.wait()
        self.vswitchd = None

    def remove_workdir(self):
        if not self.keep:
            shutil.rmtree(self.root, ignore_errors=True)

    def dump_logs(self, lines=60):
        for path in (self.vswitchd_log, self.ovsdb_log,
                     os.path.join(self.logdir, "ovs-vswitchd.stderr"),
                     os.path.join(self.logdir, "ovsdb-server.stderr")):
            if os.path.exists(path) and os.path.getsize(path):
                print(f"---- last {lines} lines of {path} ----\n{_tail(path, lines)}",
                      file=sys.stderr)

    # ---- Running tools ----

    def run(self, command, check=True, timeout=None):
        """Runs 'command' in the sandbox's environment and returns its stdout.
        Raises SandboxError when it fails (if 'check') or times out."""
        timeout = timeout or self.command_timeout
        try:
            result = subprocess.run(command, env=self.env, capture_output=True,
                                    text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise SandboxError(f"{' '.join(command)}: no answer in {timeout} s")
        if check and result.returncode != 0:
            raise SandboxError(f"{' '.join(command)}: exit status "
                               f"{result.returncode}: {result.stderr.strip()}")
        return result.stdout

    def vsctl(self, *args, check=True):
        """ovs-vsctl against this sandbox's database.  Unless told --no-wait it waits
        for ovs-vswitchd to apply the change, as ovs-vsctl does by default."""
        return self.run(["ovs-vsctl", f"--timeout={self.command_timeout}", *args],
                        check=check).strip()

    def appctl(self, target, *args, check=True):
        return self.run(["ovs-appctl", f"--timeout={self.command_timeout}",
                         "-t", target, *args], check=check).strip()

    def ofctl(self, *args, check=True):
        return self.run(["ovs-ofctl", *args], check=check).strip()

    def get(self, table, record, column):
        """The value of one column, as ovs-vsctl formats it."""
        return self.vsctl("--if-exists", "get", table, record, column)

    def get_map(self, table, record, column):
        """A map column (statistics, status, options ...) as a dict of strings."""
        text = self.vsctl("--format=json", f"--columns={column}", "list", table, record)
        data = json.loads(text)["data"]
        if not data:
            raise SandboxError(f"no {table} record {record}")
        kind, pairs = data[0][0]
        if kind != "map":
            raise SandboxError(f"{table} {record} {column} is not a map: {data[0][0]}")
        return {key: str(value) for key, value in pairs}

    def wait_for(self, predicate, what, process=None, timeout=None):
        """Polls 'predicate' until true; raises SandboxError after 'timeout' seconds,
        or at once if 'process' exits meanwhile."""
        deadline = time.monotonic() + (timeout or self.command_timeout)
        while True:
            if predicate():
                return
            if process is not None and process.poll() is not None:
                raise SandboxError(f"gave up waiting for {what}: the process exited "
                                   f"with status {process.returncode}")
            if time.monotonic() > deadline:
                raise SandboxError(f"gave up waiting for {what}")
            time.sleep(0.05)

    def log_lines(self, levels=BAD_LOG_LEVELS, log=None):
        """Lines of ovs-vswitchd's log (or 'log') at any of 'levels'."""
        try:
            with open(log or self.vswitchd_log, errors="replace") as f:
                return [line.rstrip("\n") for line in f
                        if any(f"|{level}|" in line for level in levels)]
        except FileNotFoundError:
            return []

    # ---- Internals ----

    def _spawn(self, command, name):
        stderr = open(os.path.join(self.logdir, f"{name}.stderr"), "w")
        try:
            return subprocess.Popen(command, env=self.env, stdin=subprocess.DEVNULL,
                                    stdout=stderr, stderr=stderr, cwd=self.root,
                                    preexec_fn=_die_with_parent)
        finally:
            stderr.close()

    def _appctl_ok(self, target, *args):
        result = subprocess.run(["ovs-appctl", "--timeout=2", "-t", target, *args],
                                env=self.env, capture_output=True)
        return result.returncode == 0

    def _switch_caught_up(self):
        out = self.run(["ovs-vsctl", "--timeout=2", "--no-wait", "get",
                        "Open_vSwitch", ".", "next_cfg", "cur_cfg"], check=False)
        values = out.split()
        return len(values) == 2 and values[0] == values[1]
