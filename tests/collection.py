"""Importable helper (not a test module): this checkout's collection as users install it.

    installed = install_checkout(work_dir)   # .tarball, .collections_path, .root

`ansible-galaxy collection build` of the checkout (galaxy.yml's build_ignore decides what goes
in) into work_dir/dist, then `ansible-galaxy collection install` of that tarball into the empty
collections path work_dir/collections. The caller removes work_dir. The lab tests run the role
from there: a copy, so a file edited in the checkout while they run does not turn a re-run into
"changed", and what they test is what a user installs.
"""

import collections
import glob
import os
import subprocess

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ANSIBLE_BIN = "/opt/netxfw-venv/bin"
GALAXY = os.path.join(ANSIBLE_BIN, "ansible-galaxy")

Installed = collections.namedtuple("Installed", "tarball collections_path root")


def ansible_env(work_dir, collections_path, **extra):
    """An environment in which ansible sees exactly one collections path and no configuration
    but its defaults: the caller's ANSIBLE_* and PYTHONPATH are dropped, ANSIBLE_HOME (temp files,
    galaxy cache, ssh control sockets) is work_dir/ansible-home, ANSIBLE_CONFIG an empty file
    (so no ansible.cfg in the working directory or ~ is read)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_") and k != "PYTHONPATH"}
    home = os.path.join(work_dir, "ansible-home")
    os.makedirs(home, exist_ok=True)
    config = os.path.join(work_dir, "ansible.cfg")
    if not os.path.exists(config):
        with open(config, "w", encoding="utf-8"):
            pass
    env.update(ANSIBLE_HOME=home,
               ANSIBLE_CONFIG=config,
               ANSIBLE_COLLECTIONS_PATH=collections_path,
               ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="false",
               ANSIBLE_NOCOLOR="1",
               ANSIBLE_FORCE_COLOR="0")
    env.update(extra)
    return env


def _galaxy(work_dir, collections_path, *args):
    p = subprocess.run([GALAXY, "collection"] + list(args), cwd=work_dir, capture_output=True, text=True,
                       timeout=300, env=ansible_env(work_dir, collections_path), check=False)
    if p.returncode != 0:
        raise RuntimeError("ansible-galaxy collection %s failed (%d):\n%s%s"
                           % (" ".join(args), p.returncode, p.stdout, p.stderr))
    return p


def install_checkout(work_dir):
    """Build this checkout's tarball and install it into an empty collections path under
    work_dir; returns Installed(tarball, collections_path, root of the installed collection)."""
    dist = os.path.join(work_dir, "dist")
    collections_path = os.path.join(work_dir, "collections")
    os.makedirs(dist)
    os.makedirs(collections_path)
    _galaxy(work_dir, collections_path, "build", "--output-path", dist, REPO)
    (tarball,) = glob.glob(os.path.join(dist, "netxfw-firewall-*.tar.gz"))
    _galaxy(work_dir, collections_path, "install", "--offline", "-p", collections_path, tarball)
    return Installed(tarball, collections_path,
                     os.path.join(collections_path, "ansible_collections", "netxfw", "firewall"))
