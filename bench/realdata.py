# SPDX-License-Identifier: GPL-2.0-or-later
"""A real-world, IPv6-heavy rule set for the benchmarks: country blocks from the GeoIP legacy
country databases that Debian ships (package geoip-database: /usr/share/GeoIP/GeoIP.dat and
GeoIPv6.dat; country codes from python3-pygeoip). Nothing is downloaded and no data is committed:
this script walks the databases' binary trees and prints one CIDR per line.

    /usr/bin/python3 bench/realdata.py [--keep DE,AT,CH,NL,BE] > countries.txt

Every country's ranges but the kept ones (a "block everything but where my users are" list), as the
prefixes the databases hold: with the default five kept, 303k IPv4 and 392k IPv6 prefixes (the ~700k
mixed set of issue 15). Not a test module.
"""

import argparse
import sys

DATABASES = (("/usr/share/GeoIP/GeoIP.dat", 4), ("/usr/share/GeoIP/GeoIPv6.dat", 6))
COUNTRY_BEGIN = 16776960  # a record at or above this is a leaf: country id = record - COUNTRY_BEGIN
DEFAULT_KEEP = "DE,AT,CH,NL,BE"


def country_codes():
    try:
        from pygeoip.const import COUNTRY_CODES
    except ImportError:
        sys.exit("bench/realdata.py needs python3-pygeoip (bench/install-deps)")
    return COUNTRY_CODES


def walk(data, bits):
    """(prefix int, prefix length, country id) of every leaf of a GeoIP legacy country tree
    (3-byte little-endian records, two per node)."""
    stack = [(0, 0, 0)]  # node, prefix, depth
    while stack:
        node, prefix, depth = stack.pop()
        base = node * 6
        for side in (1, 0):  # the left side (bit 0) comes out first
            off = base + 3 * side
            record = data[off] | data[off + 1] << 8 | data[off + 2] << 16
            sub = prefix | side << (bits - depth - 1)
            if record >= COUNTRY_BEGIN:
                yield sub, depth + 1, record - COUNTRY_BEGIN
            elif depth + 1 < bits:
                stack.append((record, sub, depth + 1))


def prefixes(keep):
    """The CIDR strings of every country's ranges but the countries in `keep` (codes)."""
    import ipaddress
    codes = country_codes()
    skip = set(i for i, code in enumerate(codes) if not code or code in keep)  # '' = no country
    for path, family in DATABASES:
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as exc:
            sys.exit("cannot read %s (%s): install geoip-database (bench/install-deps)" % (path, exc))
        cls = ipaddress.IPv4Address if family == 4 else ipaddress.IPv6Address
        bits = 32 if family == 4 else 128
        for prefix, length, country in walk(data, bits):
            # GeoIPv6.dat repeats IPv4 in ::/96 and ::ffff:0:0/96: GeoIP.dat has those
            if country not in skip and not (family == 6 and prefix >> 32 in (0, 0xffff)):
                yield "%s/%d" % (cls(prefix), length)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keep", default=DEFAULT_KEEP, help="country codes left out (default %(default)s)")
    args = ap.parse_args()
    out = sys.stdout
    for cidr in prefixes(set(args.keep.split(","))):
        out.write(cidr + "\n")


if __name__ == "__main__":
    main()
