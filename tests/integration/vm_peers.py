"""DPDK testpmd "VMs" on our switch's vhost-user ports, for the integration tests.

A VM is one testpmd with one virtio_user port.  Its forwarding lcore runs on CPU 1;
the sandbox pins the switch's PMD thread to CPU 0 (pmd-cpu-mask=0x1).
"""

import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "peers"))
from testpmd import TestPmd  # noqa: E402,F401


def start_vm(sock, name, workdir, mode="io", queues=1, server=False, **kwargs):
    """Starts testpmd on 'sock' in forward mode 'mode' and waits for its prompt (and,
    for a client-side port, the link)."""
    vm = TestPmd([sock], queues=queues, forward_mode=mode, server=server,
                 file_prefix="vm-%s-%d" % (name, os.getpid()),
                 log_path=os.path.join(workdir, "testpmd-%s.log" % name), **kwargs)
    vm.wait_ready()
    if not server:
        vm.wait_link_up()
    return vm


def wait_socket(path, timeout=10):
    deadline = time.time() + timeout
    while not os.path.exists(path):
        if time.time() > deadline:
            raise AssertionError("no socket at " + path)
        time.sleep(0.05)
