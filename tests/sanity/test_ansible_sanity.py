# SPDX-License-Identifier: GPL-2.0-or-later
"""`ansible-test sanity` on the collection (scripts/sanity, every sanity test it has), and
shellcheck on the shell scripts: ansible-test's own shellcheck test only looks at *.sh files,
and this repository's scripts have no extension.

Both fail with the tool's whole output when it reports anything."""

import os
import re
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# What counts as a finding besides the exit code: ansible-test's errors, and its warnings that a
# test was skipped or could not run (a missing tool, a missing virtual environment).
# pip's own warnings while ansible-test builds its venvs are not findings.
FINDING = re.compile(r"^(ERROR|FATAL): |^WARNING: .*(Skipping|skipped|not found|cannot|out-of-date)")


def findings(output):
    return [line for line in output.splitlines() if FINDING.search(line)]


def test_findings_recognises_ansible_test_output():
    out = "\n".join([
        'Running sanity test "pylint"',
        "WARNING: Location 'file:///x/simple/pylint/' is ignored: it is neither a file nor a directory.",
        "ERROR: tests/x.py:1:0: unused-import: Unused os",
        'WARNING: Required program "shellcheck" not found.',
        'WARNING: Skipping sanity test "import" on Python 3.11 due to missing virtual environment support.',
        "FATAL: The 1 sanity test(s) listed below (out of 22) failed. See error output above for details.",
    ])
    assert findings(out) == out.splitlines()[2:]


def test_ansible_test_sanity():
    proc = subprocess.run([os.path.join(ROOT, "scripts", "sanity")], cwd=ROOT, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=3600, check=False)
    assert proc.returncode == 0 and not findings(proc.stdout), proc.stdout


def shell_scripts():
    names = subprocess.run(["git", "-C", ROOT, "ls-files", "-z"], stdout=subprocess.PIPE, check=True).stdout
    scripts = []
    for name in names.decode().split("\0"):
        path = os.path.join(ROOT, name)
        if not name or not os.path.isfile(path):
            continue
        with open(path, "rb") as f:
            first = f.readline()
        if re.match(rb"#!\s*(/usr/bin/env\s+)?(/bin/|/usr/bin/)?(ba)?sh(\s|$)", first):
            scripts.append(name)
    return scripts


def test_shell_scripts_found():
    # the scripts the lead runs and the role ships; if none matched, shellcheck would check nothing
    assert {"scripts/sanity", "roles/netxfw/files/netxfw-host-deps"} <= set(shell_scripts())


def test_shellcheck():
    if shutil.which("shellcheck") is None:
        pytest.fail("shellcheck is not installed (Debian package shellcheck; scripts/install-deps installs it)")
    proc = subprocess.run(["shellcheck"] + shell_scripts(), cwd=ROOT, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout
