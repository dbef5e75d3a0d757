"""`molecule test` of extensions/molecule/default on the lab (default driver, no Docker):
create (lab up), converge (the netxfw role), idempotence, verify (packets), destroy (lab down).

Run as root:  /opt/netxfw-venv/bin/python -m pytest tests/integration/test_molecule.py
"""

import os
import shutil
import subprocess
import tempfile
import time

import pytest

import collection
from labkit import NEEDS, REPO

VENV_BIN = "/opt/netxfw-venv/bin"

pytestmark = NEEDS + [
    pytest.mark.skipif(not os.path.exists(os.path.join(VENV_BIN, "molecule")),
                       reason="needs molecule in the controller venv (scripts/install-deps)"),
]


def test_molecule_scenario_passes(root_netns):
    root = tempfile.mkdtemp(prefix="netxfw-molecule-")
    env = dict(os.environ, PATH=VENV_BIN + os.pathsep + os.environ.get("PATH", ""))
    try:
        # the collection as users install it: a copy, so files edited in the checkout meanwhile
        # do not turn idempotence into "changed"
        coll = collection.install_checkout(root).collections_path
        os.makedirs(os.path.join(root, "tmp"))
        env.update(ANSIBLE_COLLECTIONS_PATH=coll,
                   ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="false",
                   ANSIBLE_LOCAL_TEMP=os.path.join(root, "tmp"),
                   ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", NO_COLOR="1",
                   MOLECULE_NO_LOG="false")
        t0 = time.monotonic()
        p = subprocess.run([os.path.join(VENV_BIN, "molecule"), "test", "-s", "default"],
                           cwd=REPO, env=env, capture_output=True, text=True, timeout=2400, check=False)
        elapsed = time.monotonic() - t0
        out = p.stdout + p.stderr
        assert p.returncode == 0, out[-20000:]
        for phase in ("create", "converge", "idempotence", "verify", "destroy"):
            assert "[default > %s] Executed: Successful" % phase in out, (phase, out[-5000:])
        assert "as expected" in out, out[-5000:]
        print("\nmolecule test (2 lab hosts): %.1fs" % elapsed)
    finally:
        # a failed run must not leave its lab behind: destroy only removes a lab it created
        if os.path.exists("/var/lib/netxfw-lab/lab.json"):
            subprocess.run([os.path.join(VENV_BIN, "molecule"), "destroy", "-s", "default"], cwd=REPO,
                           env=env, capture_output=True, timeout=300, check=False)
        shutil.rmtree(root, ignore_errors=True)
