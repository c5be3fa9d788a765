"""What a running ovs-vswitchd holds that a vhost-user frontend could leak: its fds and
its guest-memory mappings, read from /proc.

Two kinds of fd come and go on their own and are left out, so that a footprint taken at
any moment can be compared with any other:
  - pipes: OVS's latches, a pair per thread, and OVS starts some threads on demand or in
    an order that varies between runs.  The backend has no pipes (its fds are sockets,
    eventfds and memfds).
  - the unixctl connections of ovs-appctl (unix sockets on the daemon's .ctl path): the
    tests themselves open one for every `ovs-appctl`, and the daemon closes it only when
    its main loop next sees the tool hang up, which on a loaded machine can be after the
    tool has exited and the test has taken its snapshot.
"""

import os
import re


def _unixctl_inodes(pid):
    """Inodes of the daemon's unix sockets bound to, or accepted on, a .ctl path."""
    inodes = set()
    try:
        with open(f"/proc/{pid}/net/unix") as f:
            next(f)
            for line in f:
                fields = line.split()
                if len(fields) >= 8 and fields[7].endswith(".ctl"):
                    inodes.add(fields[6])
    except OSError:
        pass
    return inodes


def fd_kinds(pid):
    """The daemon's fds by kind ("socket", "anon_inode:[eventfd]", "/memfd:..."), pipes
    and unixctl connections left out."""
    unixctl = _unixctl_inodes(pid)
    kinds = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue  # closed while we looked
        if link.startswith("pipe:"):
            continue
        if link.startswith("socket:["):
            if link[len("socket:["):-1] in unixctl:
                continue
            kind = "socket"
        elif link.startswith("anon_inode"):
            kind = link
        else:
            kind = link.split(" (deleted)")[0]
        kinds[kind] = kinds.get(kind, 0) + 1
    return kinds


def memfd_maps(pid):
    """Mappings of memfds: guest memory (the daemon maps nothing else from memfds)."""
    with open(f"/proc/{pid}/maps") as f:
        return sum("/memfd:" in line for line in f)


def vmsize_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmSize:\s+(\d+)", f.read()).group(1))


def footprint(pid):
    """{"fds": count, "memfd_maps": count}: equal footprints mean nothing leaked."""
    return {"fds": sum(fd_kinds(pid).values()), "memfd_maps": memfd_maps(pid)}
