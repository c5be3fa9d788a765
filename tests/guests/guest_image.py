#!/usr/bin/env python3
"""Builds the test guests' kernel and initramfs from Debian packages, and caches them.

The kernel is Debian's linux-image-cloud-amd64 (resolved to the versioned package it
depends on), fetched with `apt-get download` and unpacked with `dpkg -x`: nothing is
installed on the host.  The initramfs holds busybox-static (the host's installed
package), the virtio-net modules from that same kernel package, guest_init.sh as /init
and scenarios/*.sh.  It is written here as a newc cpio archive, so /dev/console can be
a device node without mknod or a cpio tool.

A build is cached in CACHE/guest-<hash>/ (CACHE is $VHU_GUEST_CACHE or
/var/cache/ovs-vhostuser), where the hash covers every input: the kernel package's name
and version, busybox-static's version, /init, the scenarios, the module list and this
file.  A change to any of them builds a new image.  The kernel package's resolution
is remembered until apt's lists or configuration change, so finding an unchanged
image costs no apt-cache look-up.

usage: guest_image.py [--cache-dir DIR]   (prints the kernel and initramfs paths)
"""

import argparse
import fcntl
import glob
import gzip
import hashlib
import io
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
INIT_SCRIPT = os.path.join(HERE, "guest_init.sh")
SCENARIO_DIR = os.path.join(HERE, "scenarios")
KERNEL_METAPACKAGE = "linux-image-cloud-amd64"
BUSYBOX_PACKAGE = "busybox-static"
BUSYBOX = "/bin/busybox"
# The virtio-net stack is modular in the cloud kernel; each module here needs only the
# ones before it.
MODULES = ["virtio_ring", "virtio", "virtio_pci_modern_dev", "virtio_pci_legacy_dev",
           "virtio_pci", "failover", "net_failover", "virtio_net"]
# Modules shipped in /lib/modules but not loaded at boot: a test insmods them.
# pktgen: the kernel's packet generator, a fixed-count flood from the guest.
EXTRA_MODULES = ["pktgen"]
DEFAULT_CACHE = "/var/cache/ovs-vhostuser"
# Images kept besides the one in use; older ones are removed.
KEEP_OLD_IMAGES = 2


class GuestImage:
    """Paths of a built image: a kernel and an initramfs."""

    def __init__(self, directory):
        self.directory = directory
        self.kernel = os.path.join(directory, "vmlinuz")
        self.initramfs = os.path.join(directory, "initramfs.gz")
        with open(os.path.join(directory, "inputs.json")) as f:
            self.inputs = json.load(f)


def _run(argv, **kwargs):
    return subprocess.run(argv, check=True, capture_output=True, text=True, **kwargs).stdout


class _Apt:
    """apt-cache and apt-get download, running `apt-get update` once when the package
    lists are missing or stale (a fresh machine has none; a stale list names a version
    the mirror no longer serves)."""

    def __init__(self):
        self.updated = False

    def update_once(self):
        if self.updated:
            return False
        _run(["apt-get", "update", "-qq"])
        self.updated = True
        return True

    def kernel_package(self):
        """The versioned linux-image package the metapackage depends on, and its
        candidate version."""
        while True:
            try:
                deps = _run(["apt-cache", "depends", "--important", KERNEL_METAPACKAGE])
                names = [line.split(":", 1)[1].strip() for line in deps.splitlines()
                         if line.strip().startswith("Depends:")]
                name = next(n for n in names if n.startswith("linux-image-"))
                version = self.candidate_version(name)
                if version:
                    return name, version
            except (subprocess.CalledProcessError, StopIteration):
                pass
            if not self.update_once():
                raise RuntimeError("apt cannot resolve %s to a kernel package"
                                   % KERNEL_METAPACKAGE)

    @staticmethod
    def candidate_version(name):
        for line in _run(["apt-cache", "policy", name]).splitlines():
            line = line.strip()
            if line.startswith("Candidate:"):
                version = line.split(":", 1)[1].strip()
                return None if version == "(none)" else version
        return None

    def download(self, name, version, directory):
        # apt drops privileges to _apt for the download and warns when that user
        # cannot write the target directory.
        os.chmod(directory, 0o755)
        for _ in range(2):
            try:
                _run(["apt-get", "download", "%s=%s" % (name, version)], cwd=directory)
                return glob.glob(os.path.join(directory, name + "_*.deb"))[0]
            except subprocess.CalledProcessError as e:
                if not self.update_once():
                    raise RuntimeError("apt-get download %s=%s failed: %s"
                                       % (name, version, e.stderr))
        raise RuntimeError("apt-get download %s=%s failed" % (name, version))


def installed_version(package):
    out = subprocess.run(["dpkg-query", "-W", "-f=${Status}|${Version}", package],
                         capture_output=True, text=True).stdout
    status, _, version = out.partition("|")
    if status != "install ok installed":
        raise RuntimeError("%s is not installed (utilities/install-deps.sh installs it)"
                           % package)
    return version


def _file_digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _inputs(kernel_name, kernel_version):
    scenarios = sorted(glob.glob(os.path.join(SCENARIO_DIR, "*.sh")))
    return {
        "kernel_package": kernel_name,
        "kernel_version": kernel_version,
        "busybox_version": installed_version(BUSYBOX_PACKAGE),
        "init": _file_digest(INIT_SCRIPT),
        "scenarios": {os.path.basename(p): _file_digest(p) for p in scenarios},
        "modules": MODULES,
        "extra_modules": EXTRA_MODULES,
        "builder": _file_digest(os.path.abspath(__file__)),
    }


class _CpioWriter:
    """A newc ("070701") cpio archive, the format the kernel unpacks into its rootfs."""

    def __init__(self):
        self.out = io.BytesIO()
        self.inode = 1

    def _entry(self, name, mode, data=b"", rdev=(0, 0)):
        name_bytes = name.encode() + b"\0"
        fields = [self.inode, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1],
                  len(name_bytes), 0]
        self.inode += 1
        self.out.write(b"070701" + b"".join(b"%08X" % v for v in fields))
        self.out.write(name_bytes)
        self._pad()
        self.out.write(data)
        self._pad()

    def _pad(self):
        self.out.write(b"\0" * (-self.out.tell() % 4))

    def directory(self, name):
        self._entry(name, stat.S_IFDIR | 0o755)

    def file(self, name, data, mode=0o644):
        self._entry(name, stat.S_IFREG | mode, data)

    def symlink(self, name, target):
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def char_device(self, name, major, minor):
        self._entry(name, stat.S_IFCHR | 0o600, rdev=(major, minor))

    def finish(self):
        self._entry("TRAILER!!!", 0)
        return self.out.getvalue()


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def _initramfs(module_dir):
    cpio = _CpioWriter()
    for d in ["bin", "dev", "etc", "lib", "lib/modules", "proc", "sys", "tmp",
              "scenarios"]:
        cpio.directory(d)
    # The kernel opens /dev/console for /init's stdio before /init can mount devtmpfs.
    cpio.char_device("dev/console", 5, 1)
    cpio.file("bin/busybox", _read(BUSYBOX), 0o755)
    cpio.symlink("bin/sh", "busybox")
    cpio.file("init", _read(INIT_SCRIPT), 0o755)
    cpio.file("etc/guest-modules", ("\n".join(MODULES) + "\n").encode())
    for module in MODULES + EXTRA_MODULES:
        cpio.file("lib/modules/%s.ko" % module,
                  _read(os.path.join(module_dir, module + ".ko")))
    for script in sorted(glob.glob(os.path.join(SCENARIO_DIR, "*.sh"))):
        cpio.file("scenarios/" + os.path.basename(script), _read(script), 0o755)
    # Level 1: the archive is small, and the guest decompresses it under emulation.
    return gzip.compress(cpio.finish(), compresslevel=1, mtime=0)


def _find_modules(tree, release):
    """Maps each needed module to its directory in the unpacked kernel package."""
    found = {}
    for path in glob.glob(os.path.join(tree, "lib/modules", release, "kernel/**/*.ko"),
                          recursive=True):
        name = os.path.basename(path)[:-3]
        if name in MODULES + EXTRA_MODULES:
            found[name] = path
    missing = [m for m in MODULES + EXTRA_MODULES if m not in found]
    if missing:
        raise RuntimeError("kernel package lacks modules: " + ", ".join(missing))
    return found


def _build(apt, inputs, target):
    work = tempfile.mkdtemp(prefix="build-", dir=os.path.dirname(target))
    try:
        deb = apt.download(inputs["kernel_package"], inputs["kernel_version"], work)
        tree = os.path.join(work, "tree")
        _run(["dpkg", "-x", deb, tree])
        kernels = glob.glob(os.path.join(tree, "boot", "vmlinuz-*"))
        if len(kernels) != 1:
            raise RuntimeError("expected one kernel in %s, found %s" % (deb, kernels))
        release = os.path.basename(kernels[0])[len("vmlinuz-"):]
        modules = _find_modules(tree, release)
        flat = os.path.join(work, "modules")
        os.mkdir(flat)
        for name, path in modules.items():
            shutil.copy(path, os.path.join(flat, name + ".ko"))

        image = os.path.join(work, "image")
        os.mkdir(image)
        shutil.copy(kernels[0], os.path.join(image, "vmlinuz"))
        with open(os.path.join(image, "initramfs.gz"), "wb") as f:
            f.write(_initramfs(flat))
        with open(os.path.join(image, "inputs.json"), "w") as f:
            json.dump(dict(inputs, kernel_release=release), f, indent=2, sort_keys=True)
        # Appears whole or not at all, for a concurrent reader.
        os.rename(image, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _prune(cache_dir, keep):
    images = sorted((d for d in glob.glob(os.path.join(cache_dir, "guest-*"))
                     if d != keep), key=os.path.getmtime, reverse=True)
    for old in images[KEEP_OLD_IMAGES:]:
        shutil.rmtree(old, ignore_errors=True)


# apt-cache parses every package list on each call (Debian's container images keep no
# binary cache): seconds per call on a busy machine.  The kernel package it resolves
# to is remembered here together with the state of apt's configuration and lists,
# and asked again when any of them changes (apt-get update rewrites the lists).
KERNEL_MEMO = "kernel-package.json"
_APT_STATE_PATHS = ["/var/lib/apt/lists", "/etc/apt/sources.list",
                    "/etc/apt/sources.list.d", "/etc/apt/preferences.d"]


def _apt_state():
    state = {}
    for path in _APT_STATE_PATHS:
        try:
            state[path] = os.stat(path).st_mtime_ns
        except OSError:
            state[path] = None
    return state


def _remembered_kernel(cache_dir):
    try:
        with open(os.path.join(cache_dir, KERNEL_MEMO)) as f:
            memo = json.load(f)
    except (OSError, ValueError):
        return None
    if memo.get("apt_state") != _apt_state():
        return None
    return memo.get("name"), memo.get("version")


def _remember_kernel(cache_dir, name, version, apt_state):
    path = os.path.join(cache_dir, KERNEL_MEMO)
    with open(path + ".tmp", "w") as f:
        json.dump({"name": name, "version": version, "apt_state": apt_state}, f)
    os.rename(path + ".tmp", path)


def _target(cache_dir, inputs):
    digest = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]
    return os.path.join(cache_dir, "guest-" + digest)


def ensure_image(cache_dir=None, log=None):
    """Returns the GuestImage for the current inputs, building it if it is not cached."""
    cache_dir = cache_dir or os.environ.get("VHU_GUEST_CACHE") or DEFAULT_CACHE
    os.makedirs(cache_dir, exist_ok=True)
    remembered = _remembered_kernel(cache_dir)
    if remembered:
        target = _target(cache_dir, _inputs(*remembered))
        if os.path.isdir(target):
            os.utime(target)
            return GuestImage(target)
    apt = _Apt()
    apt_state = _apt_state()
    kernel = apt.kernel_package()
    if not apt.updated:
        _remember_kernel(cache_dir, *kernel, apt_state)
    inputs = _inputs(*kernel)
    target = _target(cache_dir, inputs)
    # Tests running at once must not build the same image twice.
    with open(os.path.join(cache_dir, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not os.path.isdir(target):
            if log:
                log("building guest image %s (%s %s)" % (target, inputs["kernel_package"],
                                                         inputs["kernel_version"]))
            _build(apt, inputs, target)
            _prune(cache_dir, target)
        os.utime(target)
    return GuestImage(target)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cache-dir")
    args = ap.parse_args()
    image = ensure_image(args.cache_dir, log=lambda m: print(m, file=sys.stderr))
    print("kernel=%s" % image.kernel)
    print("initramfs=%s" % image.initramfs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
