# Copyright: (c) 2025, netxfw developers
# GNU General Public License v2.0+ (see https://www.gnu.org/licenses/gpl-2.0.txt)
# SPDX-License-Identifier: GPL-2.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import select
import signal
import stat
import time

import pytest

from ansible_collections.netxfw.firewall.plugins.module_utils import state
from ansible_collections.netxfw.firewall.plugins.module_utils.errors import NetxfwError

RULES = {
    "version": 1,
    "generation": 3,
    "whitelist": ["198.51.100.0/24"],
    "blacklist": [{"cidr": "203.0.113.1/32", "expires": None}],
    "port_rules": [{"source": "any", "proto": "tcp", "ports": "22", "action": "allow"}],
}


@pytest.fixture
def store(tmp_path):
    return state.StateStore(str(tmp_path / "netxfw"))


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def state_files(store):
    return sorted(os.listdir(store.state_dir))


class Child:
    """A forked process running `body(ready)`; `ready()` tells the parent it reached its point."""

    def __init__(self, body):
        read_end, write_end = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            os.close(read_end)
            try:
                body(lambda: os.write(write_end, b"."))
            finally:
                os._exit(0)
        os.close(write_end)
        self.ready_pipe = read_end

    def wait_ready(self, timeout=10):
        assert select.select([self.ready_pipe], [], [], timeout)[0], "child did not get ready"
        assert os.read(self.ready_pipe, 1) == b"."

    def kill(self):
        os.kill(self.pid, signal.SIGKILL)
        self.join()

    def join(self):
        os.waitpid(self.pid, 0)
        os.close(self.ready_pipe)


# reading and writing

def test_missing_files_read_as_empty(store):
    assert store.read_config() == {}
    assert store.read_rules() == {"version": 1, "generation": 0, "whitelist": [], "blacklist": [], "port_rules": []}
    assert not os.path.exists(store.state_dir)  # reading creates nothing


def test_rules_round_trip(store):
    store.write_rules(RULES)
    assert store.read_rules() == RULES


def test_write_rules_fills_version_and_missing_lists(store):
    store.write_rules({"whitelist": ["198.51.100.0/24"]})
    assert store.read_rules() == {"version": 1, "generation": 0, "whitelist": ["198.51.100.0/24"], "blacklist": [], "port_rules": []}


def test_read_rules_tolerates_missing_lists(store):
    os.makedirs(store.state_dir)
    with open(store.path("rules.json"), "w") as stream:
        stream.write('{"version": 1, "whitelist": ["198.51.100.0/24"]}')
    assert store.read_rules() == {"version": 1, "generation": 0, "whitelist": ["198.51.100.0/24"], "blacklist": [], "port_rules": []}


def test_config_round_trip_and_format(store):
    config = {"policy": "deny", "interfaces": ["veth0"], "icmp": {"rate": 10, "burst": 20}}
    store.write_config(config)
    assert store.read_config() == config
    with open(store.path("config.json")) as stream:
        text = stream.read()
    assert text == json.dumps(config, indent=2, sort_keys=True) + "\n"
    assert text.index('"icmp"') < text.index('"interfaces"') < text.index('"policy"')


def test_modes_and_no_leftovers(store):
    store.write_config({"policy": "allow"})
    store.write_rules(RULES)
    assert mode(store.state_dir) == 0o700
    assert mode(store.path("config.json")) == 0o600
    assert mode(store.path("rules.json")) == 0o600
    assert state_files(store) == ["config.json", "rules.json"]


def test_json_of_others_in_state_dir(store):
    """The public JSON API: the hot reload's journal and the rollback window's files (in a subdirectory)
    get the same atomic, private writes as config.json."""
    assert store.read_json(".reload.json", {}) == {}
    assert store.read_json("rollback/pending") is None
    store.write_json("rollback/pending", {"id": "w1"})
    store.write_json(".reload.json", {"folded": True})
    assert store.read_json("rollback/pending") == {"id": "w1"}
    assert store.read_json(".reload.json", {}) == {"folded": True}
    assert mode(store.path("rollback")) == 0o700
    assert mode(store.path("rollback/pending")) == 0o600
    assert sorted(os.listdir(store.path("rollback"))) == ["pending"]
    store.remove("rollback/pending")
    store.remove("rollback/pending")  # nothing there: no error
    assert store.read_json("rollback/pending") is None
    with open(store.path("rollback/bad"), "w") as stream:
        stream.write("[1]")
    with pytest.raises(NetxfwError, match="must hold a JSON object"):
        store.read_json("rollback/bad")


def test_write_replaces_previous_content(store):
    store.write_config({"policy": "allow", "old": True})
    store.write_config({"policy": "deny"})
    assert store.read_config() == {"policy": "deny"}


@pytest.mark.parametrize("content, message", [
    (b'{"version": 1, "whitelist": [', "is not valid JSON"),
    (b"", "is not valid JSON"),
    (b"\xff\xfe garbage", "is not valid JSON"),
    (b"[]", "must hold a JSON object"),
    (b'{"version": 2}', "has version 2"),
    (b'{"whitelist": []}', "has version None"),
    (b'{"version": 1, "blacklist": {}}', "'blacklist' must be a list"),
])
def test_corrupt_rules_file_is_an_error(store, content, message):
    os.makedirs(store.state_dir)
    with open(store.path("rules.json"), "wb") as stream:
        stream.write(content)
    with pytest.raises(NetxfwError) as raised:
        store.read_rules()
    assert store.path("rules.json") in str(raised.value)
    assert message in str(raised.value)


def test_corrupt_config_file_is_an_error(store):
    os.makedirs(store.state_dir)
    with open(store.path("config.json"), "w") as stream:
        stream.write("{policy: deny}")
    with pytest.raises(NetxfwError, match="config.json is not valid JSON"):
        store.read_config()


# atomicity

def test_failed_dump_keeps_the_old_file(store, monkeypatch):
    store.write_rules(RULES)

    def broken_dump(data, stream, **kwargs):
        stream.write('{"version": 1, "whitel')
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(state.json, "dump", broken_dump)
    with pytest.raises(RuntimeError, match="disk on fire"):
        store.write_rules({"whitelist": ["2001:db8::/32"]})
    monkeypatch.undo()
    assert store.read_rules() == RULES
    assert state_files(store) == ["rules.json"]


def test_process_killed_before_rename_keeps_the_old_file(store, monkeypatch):
    store.write_rules(RULES)

    def write_then_hang(ready):
        def hang_instead_of_replacing(source, destination):
            ready()
            time.sleep(60)

        monkeypatch.setattr(state.os, "replace", hang_instead_of_replacing)
        store.write_rules({"whitelist": ["2001:db8::/32"]})

    child = Child(write_then_hang)
    child.wait_ready()
    child.kill()
    assert store.read_rules() == RULES
    leftovers = [name for name in state_files(store) if name != "rules.json"]
    assert len(leftovers) == 1 and leftovers[0].startswith(".rules.json.")  # the complete, never-renamed temp file
    with open(store.path(leftovers[0])) as stream:
        assert json.load(stream)["whitelist"] == ["2001:db8::/32"]


# locking

def test_lock_creates_private_dir_and_lock_file(store):
    with store.lock():
        assert mode(store.state_dir) == 0o700
        assert mode(store.path(".lock")) == 0o600


def test_lock_is_reentrant_after_release(store):
    with store.lock(timeout=0):
        pass
    with store.lock(timeout=0):
        pass


def test_lock_contention_with_another_process(store):
    def hold_lock(ready):
        with store.lock():
            ready()
            time.sleep(60)

    child = Child(hold_lock)
    try:
        child.wait_ready()
        started = time.monotonic()
        with pytest.raises(NetxfwError) as raised:
            with store.lock(timeout=0.3):
                pass
        assert 0.3 <= time.monotonic() - started < 5
        assert str(raised.value).startswith("another netxfw run holds %s" % store.path(".lock"))
    finally:
        child.kill()
    with store.lock(timeout=0):  # the kernel released the dead holder's lock
        pass


def test_lock_waits_for_the_holder_to_finish(store):
    def hold_lock_briefly(ready):
        with store.lock():
            ready()
            time.sleep(0.5)

    child = Child(hold_lock_briefly)
    try:
        child.wait_ready()
        started = time.monotonic()
        with store.lock(timeout=10):
            assert time.monotonic() - started >= 0.2
    finally:
        child.join()


def test_lock_released_when_body_raises(store):
    with pytest.raises(ValueError):
        with store.lock():
            raise ValueError("boom")
    with store.lock(timeout=0):
        pass


def test_check_mode_lock_creates_nothing(tmp_path):
    store = state.StateStore(str(tmp_path / "absent"))
    with store.lock(create=False):
        pass
    assert not (tmp_path / "absent").exists()
