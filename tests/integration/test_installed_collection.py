"""The collection as users install it, on a fresh 1-host lab.

`ansible-galaxy collection build` of this checkout and `ansible-galaxy collection install` of the
tarball into an empty temp collections path (tests/collection.py); the tarball holds what users
need and nothing of the development harness; then `ansible-playbook netxfw.firewall.harden` with
that path as the only collections path, run outside the checkout. Packets prove the firewall; a
canary file added to the installed tree, found in the release the role deployed on the host, proves
that the agent and the engine came from the installed collection, not from a checkout.

Run as root:  /opt/netxfw-venv/bin/python -m pytest tests/integration/test_installedcollection.py
The tests in this file build on each other and run in file order.
"""

import json
import os
import secrets
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time

import pytest

import collection
from labkit import CLI, LAB_VARS, NEEDS, RECAP_RE, REPO, SERVICE_PORT, WaitingLab, outcomes, probe

PLAYBOOK = "netxfw.firewall.harden"
LIB_DIR = "/usr/lib/netxfw"  # the role's netxfw_lib_dir default
CANARY = os.path.join("agent", "netxfw_agent", "installed-canary.txt")

# What a user gets (galaxy.yml says why each is there), top level of the tarball
SHIPPED = {"FILES.json", "MANIFEST.json", "README.md", "COPYING", "meta", "playbooks", "plugins", "roles",
           "agent", "bpf", "scripts", "docs"}
# Shipped whole: every file of the checkout under these is in the tarball
SHIPPED_WHOLE = ("meta", "playbooks", "plugins", "roles", "agent", "bpf", "scripts/gen_bpf_source.py")
# Development harness, results and output that must stay out
NOT_SHIPPED = ("harden.yml", "bench", "tests", "lab", "extensions", "scripts/install-deps", "scripts/main-job",
               "scripts/sanity", "scripts/test", "scripts/venv-requirements.txt",
               "docs/benchmarks", "docs/benchmarks.md", "docs/screenshots", ".ci", ".lab", ".gitignore")

pytestmark = NEEDS


@pytest.fixture(scope="module")
def lab(root_netns):
    with WaitingLab(hosts=1, force=False) as lab:
        yield lab


@pytest.fixture(scope="module")
def installed():
    work = tempfile.mkdtemp(prefix="netxfw-installed-")
    try:
        inst = collection.install_checkout(work)
        yield {"work": work, "tarball": inst.tarball, "collections": inst.collections_path, "root": inst.root}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def checkout_files(part):
    top = os.path.join(REPO, part)
    if os.path.isfile(top):
        yield part
    for directory, dirs, files in os.walk(top):
        dirs[:] = [d for d in dirs if d != "__pycache__" and not d.startswith(".")]
        for name in files:
            if not name.endswith(".pyc") and not name.startswith("."):
                yield os.path.relpath(os.path.join(directory, name), REPO)


def payload(collection_root, out_dir):
    """The agent library tarball the role would pack from collection_root, with the role's own
    packer from that tree: {"path", "sha256"}."""
    packer = os.path.join(collection_root, "roles", "netxfw", "files", "netxfw-payload.py")
    p = subprocess.run([sys.executable, packer, collection_root, out_dir], capture_output=True, text=True,
                       timeout=120, check=True)
    return json.loads(p.stdout)


def test_tarball_holds_what_users_need(installed):
    with tarfile.open(installed["tarball"]) as tar:
        members = {m.name: m for m in tar.getmembers()}
    files = {n for n, m in members.items() if m.isfile()}
    size = os.path.getsize(installed["tarball"])
    print("\n%s: %d bytes, %d files" % (os.path.basename(installed["tarball"]), size, len(files)))
    assert {n.split("/")[0] for n in members} == SHIPPED, sorted(members)
    for part in SHIPPED_WHOLE:
        missing = set(checkout_files(part)) - files
        assert not missing, (part, sorted(missing))
    assert "playbooks/harden.yml" in files
    assert {n for n in files if n.startswith("docs/")} == {"docs/agent.md", "docs/internals.md"}, files
    for name in NOT_SHIPPED:
        assert not any(n == name or n.startswith(name + "/") for n in members), name
    assert not [n for n in members if any(c.startswith(".") for c in n.split("/"))
                or "__pycache__" in n or n.endswith(".pyc")], sorted(members)
    # installed as a user installs it: the same files, under ansible_collections/netxfw/firewall
    on_disk = {os.path.relpath(os.path.join(walked[0], f), installed["root"])
               for walked in os.walk(installed["root"]) for f in walked[2]}
    assert on_disk == files, sorted(on_disk ^ files)
    # everything the agent library needs is in it: packed from the installed tree, the same
    # bytes as packed from this checkout
    out = os.path.join(installed["work"], "payload")
    assert payload(installed["root"], out)["sha256"] == payload(REPO, out)["sha256"]


def test_only_the_installed_collection_is_visible(installed):
    env = collection.ansible_env(installed["work"], installed["collections"])
    p = subprocess.run([collection.GALAXY, "collection", "list", "--format", "json"], cwd=installed["work"],
                       env=env, capture_output=True, text=True, timeout=120, check=True)
    where = [path for path, colls in json.loads(p.stdout).items() if "netxfw.firewall" in colls]
    assert where == [os.path.join(installed["collections"], "ansible_collections")], p.stdout


def test_harden_by_name_from_the_installed_collection(lab, installed, listeners):
    hosts = lab.host_names
    host = hosts[0]
    before = probe(lab, "nxattacker", hosts, "--tcp", str(SERVICE_PORT))
    assert outcomes(before, "tcp/%d" % SERVICE_PORT) == {host: "passed"}, before

    # A canary in the installed tree only: the release the role deploys must carry it
    token = secrets.token_hex(16)
    with open(os.path.join(installed["root"], CANARY), "w", encoding="utf-8") as f:
        f.write(token + "\n")
    out = os.path.join(installed["work"], "payload")
    want = payload(installed["root"], out)["sha256"]
    assert want != payload(REPO, out)["sha256"]

    env = collection.ansible_env(installed["work"], installed["collections"], ANSIBLE_HOST_KEY_CHECKING="False")
    t0 = time.monotonic()
    r = subprocess.run([os.path.join(collection.ANSIBLE_BIN, "ansible-playbook"), "-i", lab.inventory, PLAYBOOK,
                        "-e", "@" + LAB_VARS], cwd=installed["work"], env=env, capture_output=True, text=True,
                       timeout=1200, check=False)
    elapsed = time.monotonic() - t0
    output = r.stdout + r.stderr
    assert r.returncode == 0, output
    recap = {m.group(1): (int(m.group(4)), int(m.group(5))) for m in RECAP_RE.finditer(r.stdout)}
    assert recap == {host: (0, 0)}, output  # (unreachable, failed)
    print("\nansible-playbook %s (installed, 1 lab host): %.1fs" % (PLAYBOOK, elapsed))

    # the deployed library is the installed tree's payload, canary included, and its CLI works
    release = lab.host_exec(host, "readlink %s/netxfw_agent" % LIB_DIR, check=True).stdout.strip()
    assert release == "releases/%s/netxfw_agent" % want, release
    got = lab.host_exec(host, ["cat", os.path.join(LIB_DIR, "releases", want, CANARY.split("/", 1)[1])],
                        check=True).stdout.strip()
    assert got == token
    status = json.loads(lab.host_exec(host, [CLI, "--json", "status", "--sample", "0"], check=True).stdout)
    assert status["loaded"] is True, status

    for family in (4, 6):
        client = probe(lab, "nxclient", hosts, "--tcp", str(SERVICE_PORT), family=family)
        attacker = probe(lab, "nxattacker", hosts, "--tcp", "22", "--tcp", str(SERVICE_PORT), family=family)
        assert outcomes(client, "tcp/%d" % SERVICE_PORT) == {host: "passed"}, (family, client)
        # the attacker still reaches ssh (open to any), not the service (open to the client only)
        assert outcomes(attacker, "tcp/22") == {host: "passed"}, (family, attacker)
        assert outcomes(attacker, "tcp/%d" % SERVICE_PORT) == {host: "dropped"}, (family, attacker)
