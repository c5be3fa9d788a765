#!/usr/bin/env python3
"""Checks ovsdb-schema/vhostuser.xml against the code and against OVS's schema.

Fails (exit 1, one line per problem) when:
  - datapath-glue reads or reports a database key that vhostuser.xml does not document;
  - vhostuser.xml documents a key the code never reads or reports;
  - a documented key does not fit OVS's vswitch.ovsschema: unknown table or column, or
    a value type the column cannot hold.

The code is read as text: the keys are the string literals it passes to OVS's smap
functions, names it gives custom counters, formats of numbered keys ("vring_%u_size"
is documented as "vring_<N>_size") and the netdev_stats members it fills (named in
ovsdb as OVS's bridge.c names them).  Tests that run the daemon check the other way
round too: every key a live port reports is documented (documented_key()).

usage: check_keys.py [--schema vswitch.ovsschema] [--ovs-source openvswitch.tar.gz]
"""

import argparse
import glob
import json
import os
import re
import sys
import tarfile
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DOC = os.path.join(HERE, "vhostuser.xml")
GLUE = os.path.join(ROOT, "datapath-glue")

# Columns a netdev class serves through a function rather than a key.
COLUMN_FUNCTIONS = {
    ("Interface", "link_state"): "get_carrier",
    ("Interface", "link_resets"): "get_carrier_resets",
    ("Interface", "mtu_request"): "set_mtu",
    ("Interface", "ingress_policing_rate"): "set_policing",
    ("Interface", "ingress_policing_burst"): "set_policing",
}


def doc_entries(path=DOC):
    """[(table, column, key or None, type dict)] from vhostuser.xml."""
    entries = []
    for table in ET.parse(path).getroot().iter("table"):
        for col in table.iter("column"):
            entries.append((table.get("name"), col.get("name"), col.get("key"),
                            json.loads(col.get("type", '{"type": "string"}'))))
    return entries


def normalize(key):
    """A live key with numbers in the places the doc writes <N>: 'vring_3_size' ->
    'vring_<N>_size', 'rx_q1_good_bytes' -> 'rx_q<N>_good_bytes'."""
    key = re.sub(r"^vring_\d+_", "vring_<N>_", key)
    return re.sub(r"^(rx|tx)_q\d+_", r"\1_q<N>_", key)


def documented_key(table, column, key, path=DOC):
    return (table, column, normalize(key)) in {(t, c, k) for t, c, k, _ in doc_entries(path)}


def read(path):
    with open(path) as f:
        return f.read()


def format_to_doc(fmt):
    return re.sub(r"%[-0-9]*(?:l{0,2}|z)[dui]", "<N>", fmt)


def iface_stat_names(ovs_source):
    """netdev_stats member -> ovsdb key, from OVS's bridge.c."""
    with tarfile.open(ovs_source) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("vswitchd/bridge.c"))
        text = tar.extractfile(member).read().decode()
    return dict(re.findall(r'IFACE_STAT\((\w+),\s*"(\w+)"\)', text))


def code_keys(ovs_source):
    """{(table, column, key)} the code reads or reports."""
    keys = set()
    sources = {os.path.basename(p): read(p) for p in glob.glob(os.path.join(GLUE, "*.c"))}
    allc = "\n".join(sources.values())

    for t in re.findall(r'\.type\s*=\s*"(\w+)"', allc):
        keys.add(("Interface", "type", t))
    # Options: the keys the option parser knows.
    for body in re.findall(r'_keys\[\]\s*=\s*\{([^}]*)\}', sources["netdev-vhostuser-options.c"]):
        for k in re.findall(r'"([^"]+)"', body):
            keys.add(("Interface", "options", k))
    for k in re.findall(r'smap_get\w*\(\s*args,\s*"([^"]+)"', sources["netdev-vhostuser-options.c"]):
        keys.add(("Interface", "options", k))
    # other_config of the Open_vSwitch row.
    for k in re.findall(r'smap_get\w*\(\s*ovs_other_config,\s*"([^"]+)"',
                        sources["ovs-other-config.c"]):
        keys.add(("Open_vSwitch", "other_config", k))
    # Status: what get_status adds.
    provider = sources["netdev-vhostuser-provider.c"]
    status_fn = provider[provider.index("netdev_vhostuser_get_status("):]
    status_fn = status_fn[:status_fn.index("\n}\n")]
    for k in re.findall(r'smap_add(?:_format)?\(\s*args,\s*"([^"]+)"', status_fn):
        keys.add(("Interface", "status", k))
    for fmt in re.findall(r'snprintf\(\s*key,\s*sizeof key,\s*"([^"]+)"', status_fn):
        keys.add(("Interface", "status", format_to_doc(fmt)))
    # Statistics: netdev_stats members and custom counters.
    stats = sources["netdev-vhostuser-stats.c"]
    names = iface_stat_names(ovs_source)
    for member in set(re.findall(r'&?stats->(\w+)', stats)):
        if member not in names:
            raise SystemExit("check_keys: netdev_stats member %s has no ovsdb name" % member)
        keys.add(("Interface", "statistics", names[member]))
    for k in re.findall(r'custom_counter\(\s*custom,\s*"([^"]+)"', stats):
        keys.add(("Interface", "statistics", k))
    for fmt in re.findall(r'snprintf\(\s*name,\s*sizeof name,\s*"([^"]+)"', stats):
        keys.add(("Interface", "statistics", format_to_doc(fmt)))
    # QoS.
    for t in re.findall(r'sset_add\(\s*types,\s*"([^"]+)"', provider):
        keys.add(("QoS", "type", t))
    for k in re.findall(r'smap_get\w*\(\s*details,\s*"([^"]+)"', provider):
        keys.add(("QoS", "other_config", k))
    # Columns served by class functions.
    for (table, column), fn in COLUMN_FUNCTIONS.items():
        if re.search(r'\.%s\s*=\s*netdev_vhostuser_' % fn, provider):
            keys.add((table, column, None))
    return keys


def schema_problems(entries, schema_path):
    schema = json.load(open(schema_path))["tables"]
    problems = []
    for table, column, key, doc_type in entries:
        col = schema.get(table, {}).get("columns", {}).get(column)
        if col is None:
            problems.append("%s:%s is not a column of vswitch.ovsschema" % (table, column))
            continue
        ctype = col["type"]
        if isinstance(ctype, str):
            ctype = {"key": ctype}
        value = ctype.get("value") if "value" in ctype else ctype.get("key")
        base = value if isinstance(value, str) else value.get("type")
        if key is not None and "value" in ctype:
            key_type = ctype["key"] if isinstance(ctype["key"], str) else ctype["key"]["type"]
            if key_type != "string":
                problems.append("%s:%s keys are not strings" % (table, column))
        # A string column can hold any documented value (numbers as text); an integer
        # column only integers.
        if base == "integer" and doc_type.get("type") != "integer":
            problems.append("%s:%s:%s is documented as %s but the schema holds integers"
                            % (table, column, key, doc_type.get("type")))
        if base not in ("string", "integer"):
            problems.append("%s:%s has schema type %s" % (table, column, base))
    return problems


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--schema", default="/usr/share/openvswitch/vswitch.ovsschema")
    ap.add_argument("--ovs-source", default="/usr/src/openvswitch/openvswitch.tar.gz")
    args = ap.parse_args()

    entries = doc_entries()
    documented = {(t, c, k) for t, c, k, _ in entries}
    in_code = code_keys(args.ovs_source)
    problems = []
    for t, c, k in sorted(in_code - documented, key=str):
        problems.append("used by the code, missing from vhostuser.xml: %s:%s%s"
                        % (t, c, ":" + k if k else ""))
    for t, c, k in sorted(documented - in_code, key=str):
        problems.append("documented in vhostuser.xml, never used by the code: %s:%s%s"
                        % (t, c, ":" + k if k else ""))
    problems += schema_problems(entries, args.schema)
    for p in problems:
        print(p)
    print("%d keys documented, %d used by the code, %d problems"
          % (len(documented), len(in_code), len(problems)))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
