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
  - unnamed unix datagram sockets: syslog(3)'s, to /dev/log.  Where no syslog daemon
    listens (as on this project's test machines) glibc opens one and closes it again
    around every message the daemon logs, in whichever thread logs it; a snapshot taken
    while a thread logs counted one more fd that then never came back.  The backend's
    sockets are all stream sockets.
"""

import os
import re


SOCK_DGRAM = 2  # The Type column of /proc/net/unix.
NETLINK_PROTOCOLS = {0: "route", 4: "sock_diag", 9: "audit", 15: "kobject_uevent",
                     16: "generic"}


def _socket_kinds(pid):
    """What each of the daemon's sockets is, by inode: "unix:<file name it is bound to
    or accepted on>" ("unix:" when unnamed), "syslog" (an unnamed datagram socket),
    "netlink:<protocol>"; other sockets are not listed."""
    kinds = {}
    try:
        with open(f"/proc/{pid}/net/unix") as f:
            next(f)
            for line in f:
                fields = line.split()
                if len(fields) >= 7:
                    path = fields[7] if len(fields) >= 8 else ""
                    if not path and int(fields[4], 16) == SOCK_DGRAM:
                        kinds[fields[6]] = "syslog"
                    else:
                        kinds[fields[6]] = "unix:" + os.path.basename(path)
        with open(f"/proc/{pid}/net/netlink") as f:
            next(f)
            for line in f:
                fields = line.split()
                if len(fields) >= 10:
                    proto = int(fields[1])
                    kinds[fields[9]] = "netlink:" + NETLINK_PROTOCOLS.get(proto, str(proto))
    except OSError:
        pass
    return kinds


def fd_kinds(pid):
    """The daemon's fds by kind ("unix:vhu0", "netlink:route", "anon_inode:[eventfd]",
    "/memfd:..."), pipes and unixctl connections left out."""
    sockets = _socket_kinds(pid)
    kinds = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue  # closed while we looked
        if link.startswith("pipe:"):
            continue
        if link.startswith("socket:["):
            kind = sockets.get(link[len("socket:["):-1], "socket")
            if kind == "syslog" or (kind.startswith("unix:") and kind.endswith(".ctl")):
                continue
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
