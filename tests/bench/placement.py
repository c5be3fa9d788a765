"""Where the hypervisor has put this VM's two CPUs, for the interleaved benchmarks.

A cache line takes 30-70 ns to travel one way between the two CPUs in one placement
and 200-260 ns in the other (rarely about 140 or 300 ns; vhostuser-cpu-pair-latency,
measured here), and the VM moves between them every few seconds to minutes.
A vhost-user loop is a chain of such transfers, so its throughput follows, by 2x or
more, and two backends need not suffer alike.  The interleaved benchmarks run the
probe before and after each slice, with every contender stopped, and label the slice
with the placement both readings fall in (PLACEMENTS), or "mixed" if it changed
meanwhile.  The benchmarks then compare the contenders within each placement: the
median of each one's slices there, and their ratio.

The placement a slice starts in is the one the slice before it left, and it can move
with the work that runs (in one OVS loop run, read with the probe's first version, it
was mostly the faster one after our switch's slices and the slower after OVS-DPDK's):
how much each contender meets of each placement is not under the benchmark's control,
which is why the comparison is made within each."""

import os
import re
import statistics
import subprocess

# (name, one-way latency from, to), in ns.
PLACEMENTS = (("near", 0, 120), ("far", 120, float("inf")))
PROBE_NAME = "vhostuser-cpu-pair-latency"


class Probe:
    """vhostuser-cpu-pair-latency, or nothing if the build has none."""

    def __init__(self, binary):
        self.binary = binary if binary and os.access(binary, os.X_OK) else None

    @classmethod
    def beside(cls, program):
        """The probe built next to 'program' (a binary of the same build)."""
        return cls(os.path.join(os.path.dirname(os.path.abspath(program)), PROBE_NAME))

    def measure(self):
        """One-way transfer time between CPUs 0 and 1 in ns, or None.  About 10-30 ms."""
        if not self.binary:
            return None
        try:
            out = subprocess.run([self.binary, "--round-trips", "10000", "--trials", "3"],
                                 capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None  # An unlabelled slice; the benchmark goes on.
        m = re.match(r"one_way_ns=([\d.]+)", out.stdout)
        return float(m.group(1)) if out.returncode == 0 and m else None


def placement_of(ns):
    return next(name for name, low, high in PLACEMENTS if low <= ns < high)


def label(before, after):
    """The placement of a slice measured between two readings, 'mixed', or None."""
    if before is None or after is None:
        return None
    first = placement_of(before)
    return first if placement_of(after) == first else "mixed"


def legend():
    return ", ".join("%s %s" % (name, "under %d ns" % high if not low else
                                "%d ns or more" % low if high == float("inf") else
                                "%d-%d ns" % (low, high))
                     for name, low, high in PLACEMENTS)


def describe_slice(before, after):
    """' [line 82/85 ns, near]', or '' without a probe."""
    if before is None or after is None:
        return ""
    return " [line %.0f/%.0f ns, %s]" % (before, after, label(before, after))


def by_placement(values, labels):
    """{placement: [values of the slices that ran in it]}, mixed slices left out."""
    out = {}
    for v, lab in zip(values, labels or []):
        if lab not in (None, "mixed"):
            out.setdefault(lab, []).append(v)
    return out


def compare(a, b, labels_a, labels_b):
    """[(placement, median of a, slices, median of b, slices)] for each placement
    both contenders ran in: the placement moves throughput by more than any change
    we make, so contenders are compared within it."""
    ga, gb = by_placement(a, labels_a), by_placement(b, labels_b)
    return [(p, statistics.median(ga[p]), len(ga[p]), statistics.median(gb[p]), len(gb[p]))
            for p, _, _ in PLACEMENTS if ga.get(p) and gb.get(p)]


def summary(a, b, labels_a, labels_b, scale=1e6, unit="Mpps", count_mixed=True):
    """'near: 8.5 against 7.6 Mpps, 1.11 (12 and 9 slices); far: ...', or ''; with
    'count_mixed', how many slices were left out."""
    if not labels_a or not labels_b:
        return ""
    parts = ["%s: %.*f against %.*f %s, %.2f (%d and %d slices)" % (
        p, 2 if scale > 1 else 0, ma / scale, 2 if scale > 1 else 0, mb / scale, unit,
        ma / mb if mb else 0, na, nb) for p, ma, na, mb, nb in compare(a, b, labels_a, labels_b)]
    mixed = sum(lab == "mixed" for lab in list(labels_a) + list(labels_b))
    if mixed and count_mixed:
        parts.append("%d slice%s left out (placement changed)" % (mixed, "" if mixed == 1 else "s"))
    return "; ".join(parts)


def cell(a, b, labels_a, labels_b):
    """Table cell: 'near 1.11 (12/9), far 0.88 (7/8)': ratio of medians, slices each."""
    if not labels_a or not labels_b:
        return "-"
    parts = ["%s %.2f (%d/%d)" % (p, ma / mb if mb else 0, na, nb)
             for p, ma, na, mb, nb in compare(a, b, labels_a, labels_b)]
    return ", ".join(parts) or "-"
