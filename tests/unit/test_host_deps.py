"""roles/netxfw/files/netxfw-host-deps on Debian: which packages it asks apt for. The package
tools are stand-ins that record what they are asked (this tests the script's choices, not apt);
the rest (flock, the running kernel's headers) is this machine's."""

import os
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(REPO, "roles", "netxfw", "files", "netxfw-host-deps")

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="netxfw-host-deps runs as root"),
    pytest.mark.skipif(not os.path.exists("/lib/modules/%s/build" % os.uname().release),
                       reason="the running kernel has no headers here, so the script would look for the nearest"),
]

DPKG_QUERY = r"""#!/bin/bash
pattern=${@: -1}
for p in $FAKE_INSTALLED; do
  if [[ "$pattern" == *'*'* ]]; then
    [[ "$p" == $pattern ]] && echo "installed $p"
  elif [ "$p" = "$pattern" ]; then
    printf installed; exit 0
  fi
done
[[ "$pattern" == *'*'* ]] || exit 1
"""
APT_CACHE = r"""#!/bin/bash
[ "$1" = show ] || exit 1
for p in $FAKE_AVAILABLE; do [ "$p" = "$2" ] && exit 0; done
exit 100
"""
APT_GET = r"""#!/bin/bash
echo "$*" >> "$FAKE_LOG"
"""

BASE = "python3-bpfcc libbpf1 python3-pyroute2 python3-jmespath"


def run_deps(tmp_path, installed, available, mode="all"):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for name, text in (("dpkg-query", DPKG_QUERY), ("apt-cache", APT_CACHE), ("apt-get", APT_GET)):
        (bindir / name).write_text(text)
        (bindir / name).chmod(0o755)
    log = tmp_path / "apt.log"
    env = dict(os.environ, PATH="%s:%s" % (bindir, os.environ["PATH"]), FAKE_INSTALLED=" ".join(installed),
               FAKE_AVAILABLE=" ".join(available), FAKE_LOG=str(log))
    p = subprocess.run(["bash", SCRIPT, mode], capture_output=True, text=True, timeout=120, env=env, check=False)
    assert p.returncode == 0, p.stdout + p.stderr
    calls = log.read_text().splitlines() if log.exists() else []
    return [c.split(" install ", 1)[1].split() for c in calls if " install " in c], p.stdout


def installs(calls):
    return sorted(p for call in calls for p in call if not p.startswith("-"))


def test_headers_for_every_installed_kernel_and_the_metrics_client(tmp_path):
    installed = BASE.split() + ["linux-image-cloud-amd64", "linux-image-6.1.0-28-cloud-amd64",
                                "linux-image-6.1.0-28-cloud-amd64-dbg", "linux-image-6.1.0-27-amd64-unsigned"]
    available = ["python3-prometheus-client", "linux-headers-cloud-amd64", "linux-headers-6.1.0-28-cloud-amd64"]
    calls, out = run_deps(tmp_path, installed, available)
    # the metapackage's headers metapackage, each kernel's headers where a package exists
    assert installs(calls) == ["linux-headers-6.1.0-28-cloud-amd64", "linux-headers-cloud-amd64",
                               "python3-prometheus-client"], calls
    assert "no package linux-headers-6.1.0-27-amd64" in out, out


def test_an_equipped_host_installs_nothing(tmp_path):
    installed = BASE.split() + ["python3-prometheus-client", "linux-image-amd64", "linux-headers-amd64"]
    calls, out = run_deps(tmp_path, installed, [])
    assert calls == [] and "changed" not in out, (calls, out)


def test_check_names_what_all_would_install_and_changes_nothing(tmp_path):
    # the netxfw_host module runs `check` on every play: its "missing" lines are exactly what
    # `all` installs, and it calls no package tool that changes anything (apt-get is not called)
    installed = BASE.split() + ["linux-image-cloud-amd64", "linux-image-6.1.0-28-cloud-amd64",
                                "linux-image-6.1.0-27-amd64-unsigned"]
    available = ["python3-prometheus-client", "linux-headers-cloud-amd64", "linux-headers-6.1.0-28-cloud-amd64"]
    calls, out = run_deps(tmp_path, installed, available, mode="check")
    assert calls == [] and "changed" not in out, (calls, out)
    missing = sorted(p for line in out.splitlines() if line.startswith("netxfw-host-deps: missing: ")
                     for p in line.split(": ", 2)[2].split())
    assert missing == ["linux-headers-6.1.0-28-cloud-amd64", "linux-headers-cloud-amd64",
                       "python3-prometheus-client"], out
    equipped = BASE.split() + ["python3-prometheus-client", "linux-image-amd64", "linux-headers-amd64"]
    (tmp_path / "equipped").mkdir()
    calls, out = run_deps(tmp_path / "equipped", equipped, [], mode="check")
    assert calls == [] and out == "", (calls, out)
