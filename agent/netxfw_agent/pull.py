# SPDX-License-Identifier: GPL-2.0-or-later
"""ansible-pull mode: the host applies the policy repository to itself (`netxfw pull`).

One run:

1. opens a confirm-or-rollback window (`netxfw rollback-after`, the same window the role opens
   from a controller; one per host, so a controller's play and a pull never overlap);
2. runs `ansible-pull` with NETXFW_ROLLBACK_ID set to that window, so every change the play
   makes is the window's own (and the play's role runs with `netxfw_rollback=false`: the
   window is this runner's);
3. decides by itself what a controller's fresh SSH connection decides otherwise: it confirms
   only when the play succeeded, the data plane is loaded and attached to every configured
   interface, the policy repository is still reachable (`git ls-remote`: a pull host that
   cannot fetch can never receive the fix), and the operator's `confirm_command` (if any)
   exits 0. Otherwise it rolls the change back at once (`netxfw rollback-now`). If the runner
   dies, the window's timer rolls back at the deadline; after a reboot, `netxfw restore` does;
4. writes the result to <state_dir>/pull/last.json (and the output to last.log), which
   `netxfw status`, the API's status and `/metrics` report.

Its settings are <state_dir>/pull.json (the role writes it from the netxfw_pull_* variables).
"""

import fcntl
import json
import os
import random
import re
import shlex
import signal
import socket
import subprocess
import tempfile
import time

from netxfw_engine import queries
from netxfw_engine.errors import NetxfwError
from netxfw_engine.rules import parse_ports
from netxfw_engine.state import OWNER_ENV

CONFIG = "pull.json"
SUBDIR = "pull"
LAST = "last.json"
LOG = "last.log"
RUN_LOCK = "run.lock"
LOOP_PID = "loop.pid"
DEFAULTS = {
    "repo": None,            # required: what `ansible-pull -U` fetches
    "branch": "main",
    "playbook": "local.yml",  # relative to the checkout
    "inventory": "",          # inventory in the checkout (its group_vars/host_vars apply); default "<hostname>,"
    "checkout_dir": None,     # default <state_dir>/pull/checkout
    "ansible_pull": "ansible-pull",
    "python": "/usr/bin/python3",  # the modules' interpreter on this host (the one with BCC)
    "extra_args": [],         # more ansible-pull arguments (e.g. ["-e", "@policy.yml"])
    "timeout": 900,           # seconds ansible-pull may take; the window is this plus check_timeout + 60
    "check_timeout": 30,      # seconds for each self-check (git ls-remote, confirm_command)
    "confirm_command": "",    # shell command that must exit 0 before the change is confirmed
    "ssh_port": 22,           # some source must still be let in to tcp/ssh_port (0: no such check)
    "wait": 930,              # seconds to wait for another window (a controller's play) to close
    "interval": 900,          # --loop: seconds between runs ...
    "splay": 60,              # ... plus up to this many, random
    "cli": None,              # argv of the netxfw CLI; default the interpreter and launcher running now
}
RECAP_RE = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)
TASK_RE = re.compile(r"^TASK \[(.+?)\] \**$")
FATAL_RE = re.compile(r"^(?:fatal|failed): \[[^\]]+\]:? (?:UNREACHABLE|FAILED)!(?: => (.*))?$")
TAIL = 2000


def pull_dir(fw):
    return os.path.join(fw.store.state_dir, SUBDIR)


def config_path(fw):
    return os.path.join(fw.store.state_dir, CONFIG)


def load_config(fw, path=None):
    path = path or config_path(fw)
    try:
        with open(path, encoding="utf-8") as stream:
            given = json.load(stream)
    except FileNotFoundError:
        raise NetxfwError("ansible-pull mode is not set up: %s is missing (set netxfw_pull_repo in the netxfw role)"
                          % path)
    except ValueError as exc:
        raise NetxfwError("%s is not valid JSON (%s)" % (path, exc))
    unknown = sorted(set(given) - set(DEFAULTS))
    if unknown:
        raise NetxfwError("%s: unknown setting(s) %s" % (path, ", ".join(unknown)))
    cfg = dict(DEFAULTS, **given)
    if not cfg["repo"]:
        raise NetxfwError("%s: 'repo' is required" % path)
    cfg["checkout_dir"] = cfg["checkout_dir"] or os.path.join(pull_dir(fw), "checkout")
    return cfg


def _write_json(path, data):
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", dir=os.path.dirname(path))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            json.dump(data, stream, indent=2, sort_keys=True)
            stream.write("\n")
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp, path)
    except BaseException:
        if os.path.exists(temp):
            os.unlink(temp)
        raise


def last_result(fw):
    """The last run's result, or None before the first run (or when it is unreadable: then a dict
    saying so, so that status shows it instead of hiding it)."""
    path = os.path.join(pull_dir(fw), LAST)
    try:
        with open(path, encoding="utf-8") as stream:
            return json.load(stream)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        return {"success": False, "error": "cannot read %s: %s" % (path, exc), "finished": None}


def problems(fw):
    """Alert lines for `netxfw status`: the last pull failed."""
    res = last_result(fw)
    if not res or res.get("success"):
        return []
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(res["finished"])) if res.get("finished") else "?"
    return ["LAST PULL FAILED at %s (%s%s): %s%s" % (
        when, "commit %s, " % res["commit"][:12] if res.get("commit") else "", res.get("stage", "?"),
        res.get("error", ""), "; its change was ROLLED BACK" if res.get("rollback", {}).get("outcome") == "rolled_back"
        else "")]


def summary(res):
    """One line for `netxfw status`."""
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(res["finished"])) if res.get("finished") else "?"
    return "last pull: %s at %s, commit %s, %s changed, %.1fs (%s)" % (
        "ok" if res.get("success") else "FAILED", when, (res.get("commit") or "?")[:12], res.get("changed", "?"),
        res.get("duration") or 0.0, res.get("rollback", {}).get("outcome", "no window"))


# ---------------------------------------------------------------- reading ansible's output
def parse_output(text, host):
    """Recap counts for `host`, the play's failed task and its message, from the default callback."""
    out = {"recap": None, "failed_task": None, "failed_msg": None, "played": "PLAY [" in text}
    recaps = dict((m.group(1), {"ok": int(m.group(2)), "changed": int(m.group(3)), "unreachable": int(m.group(4)),
                                "failed": int(m.group(5))}) for m in RECAP_RE.finditer(text))
    out["recap"] = recaps.get(host) or (next(iter(recaps.values())) if len(recaps) == 1 else None)
    task = None
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = TASK_RE.match(line)
        if m:
            task = m.group(1)
            continue
        m = FATAL_RE.match(line)
        if m and not (i + 1 < len(lines) and lines[i + 1].strip() == "...ignoring"):
            out["failed_task"] = task
            out["failed_msg"] = _message(m.group(1))
    return out


def _message(payload):
    if not payload:
        return None
    try:
        data = json.loads(payload)
    except ValueError:
        return payload[:TAIL]
    msg = data.get("msg") if isinstance(data, dict) else None
    return str(msg if msg is not None else data)[:TAIL]


# ---------------------------------------------------------------- one run
def _cli(fw, cfg, *args):
    return list(cfg["cli"]) + ["--pin-path", fw.pin_path, "--state-dir", fw.store.state_dir, "--json"] + list(args)


def _run(argv, timeout, env=None, cwd=None):
    """(rc, output); rc None on timeout. The whole process group goes on timeout (ansible-pull
    starts ansible-playbook, which starts workers)."""
    try:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, cwd=cwd, start_new_session=True)
    except OSError as exc:  # not installed, not executable: said like a failed command
        return 127, "cannot run %s: %s" % (argv[0], exc)
    try:
        out, _ = proc.communicate(timeout=timeout)
        return proc.returncode, out.decode("utf-8", "replace")
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        return None, out.decode("utf-8", "replace")


def _json(text):
    try:
        return json.loads(text[text.index("{"):])
    except ValueError:
        return {}


def checks(fw, cfg):
    """The host's own confirmation: [(name, ok, detail)]."""
    results = []
    info = queries.info(fw)
    config = fw.store.read_config() or {}
    wanted = config.get("interfaces") or []
    attached = info.get("interfaces") or {}
    missing = [i for i in wanted if not (attached.get(i, {}).get("xdp") and attached.get(i, {}).get("tc"))]
    results.append(("data plane loaded and attached", bool(info.get("loaded")) and not missing,
                    "not loaded" if not info.get("loaded") else
                    ("not attached to %s" % ", ".join(missing) if missing else ", ".join(wanted))))
    if cfg["ssh_port"]:
        results.append(management_access(fw, cfg["ssh_port"]))
    rc, out = _run(["git", "ls-remote", "--exit-code", cfg["repo"], cfg["branch"]], cfg["check_timeout"],
                   env=dict(os.environ, GIT_TERMINAL_PROMPT="0"))
    results.append(("policy repository reachable", rc == 0,
                    "git ls-remote %s %s: %s" % (cfg["repo"], cfg["branch"],
                                                 "ok" if rc == 0 else "timed out" if rc is None
                                                 else "exit %s: %s" % (rc, out.strip()[-300:]))))
    if cfg["confirm_command"]:
        rc, out = _run(["/bin/sh", "-c", cfg["confirm_command"]], cfg["check_timeout"])
        results.append(("confirm_command", rc == 0, "%s: %s" % (
            cfg["confirm_command"], "ok" if rc == 0 else "timed out" if rc is None
            else "exit %s: %s" % (rc, out.strip()[-300:]))))
    return results


def management_access(fw, port):
    """(name, ok, detail): the stored state still lets some source in to tcp/port (the policy is
    allow, the whitelist is not empty, or an allow rule covers the port), so an operator can log
    in. What a controller's fresh SSH connection proves, as far as the host can tell by itself."""
    config = fw.store.read_config() or {}
    rules = fw.store.read_rules()
    name = "management access to tcp/%d" % port
    if config.get("policy") == "allow":
        return name, True, "policy allow"
    if rules.get("whitelist"):
        return name, True, "whitelist: %s" % ", ".join(e["cidr"] if isinstance(e, dict) else str(e)
                                                       for e in rules["whitelist"][:5])
    for rule in rules.get("port_rules", []):
        first, last = parse_ports(rule["ports"])
        if rule["proto"] == "tcp" and rule["action"] == "allow" and first <= port <= last:
            return name, True, "port rule: tcp %s from %s" % (rule["ports"], rule["source"])
    return name, False, "policy deny, an empty whitelist and no allow rule for tcp/%d: nobody could log in" % port


def run_once(fw, cfg):
    """One pull under confirm-or-rollback; returns the result it also writes to pull/last.json."""
    directory = pull_dir(fw)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    lock = open(os.path.join(directory, RUN_LOCK), "a+", encoding="utf-8")  # pylint: disable=consider-using-with
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise NetxfwError("another `netxfw pull` is running on this host")
        return _run_locked(fw, cfg, directory)
    finally:
        lock.close()


def _run_locked(fw, cfg, directory):
    previous = last_result(fw) or {}
    started = time.time()
    t0 = time.monotonic()
    host = socket.gethostname()
    res = {"version": 1, "started": started, "repo": cfg["repo"], "branch": cfg["branch"],
           "playbook": cfg["playbook"], "host": host, "success": False, "stage": "arm", "rc": None,
           "commit": None, "changed": None, "failed_task": None, "error": None, "checks": [],
           "rollback": {"id": None, "outcome": None, "actions": []},
           "last_success": previous.get("last_success")}
    log = []
    try:
        window = cfg["timeout"] + cfg["check_timeout"] * 3 + 60
        rc, out = _run(_cli(fw, cfg, "rollback-after", str(window), "--owner", "ansible-pull %s (%s)" % (
            cfg["repo"], cfg["branch"]), "--wait", str(cfg["wait"])), cfg["wait"] + 60)
        log.append("$ netxfw rollback-after\n" + out)
        if rc != 0:
            res["error"] = "could not open a rollback window, nothing applied: %s" % out.strip()[-TAIL:]
            return res
        ident = _json(out).get("id")
        res["rollback"]["id"] = ident

        res["stage"] = "checkout"
        argv = [cfg["ansible_pull"], "-U", cfg["repo"], "-C", cfg["branch"], "-d", cfg["checkout_dir"],
                "-i", cfg["inventory"] or host + ",", "--clean",
                "-e", "ansible_python_interpreter=%s" % cfg["python"],
                "-e", "netxfw_rollback=false", "-e", "netxfw_whitelist_controller=false",
                "-e", "netxfw_pin_path=%s" % fw.pin_path, "-e", "netxfw_state_dir=%s" % fw.store.state_dir]
        argv += list(cfg["extra_args"]) + [cfg["playbook"]]
        env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", ANSIBLE_RETRY_FILES_ENABLED="0",
                   GIT_TERMINAL_PROMPT="0", **{OWNER_ENV: ident})
        rc, out = _run(argv, cfg["timeout"], env=env)
        log.append("$ " + " ".join(shlex.quote(a) for a in argv) + "\n" + out)
        res["rc"] = rc
        parsed = parse_output(out, host)
        if parsed["recap"]:
            res["changed"] = parsed["recap"]["changed"]
        if parsed["played"]:  # else the fetch failed, and the checkout still holds an older commit
            res["stage"] = "play"
            res["commit"] = _commit(cfg["checkout_dir"])
        if rc != 0:
            res["failed_task"] = parsed["failed_task"]
            res["error"] = ("ansible-pull timed out after %ss" % cfg["timeout"] if rc is None else
                            parsed["failed_msg"] or "ansible-pull exited %s%s: %s" % (
                                rc, "" if parsed["played"] else " fetching the repository", out.strip()[-TAIL:]))
            return res

        res["stage"] = "check"
        res["checks"] = [{"check": name, "ok": ok, "detail": detail} for name, ok, detail in checks(fw, cfg)]
        failed = [c for c in res["checks"] if not c["ok"]]
        if failed:
            res["error"] = "self-check failed after the apply: " + "; ".join(
                "%s (%s)" % (c["check"], c["detail"]) for c in failed)
            return res

        res["stage"] = "confirm"
        rc, out = _run(_cli(fw, cfg, "confirm", ident), cfg["wait"] + 60)
        log.append("$ netxfw confirm %s\n%s" % (ident, out))
        if rc == 0:
            res["rollback"]["outcome"] = "confirmed"
            res["success"] = True
            res["last_success"] = time.time()
        else:
            res["error"] = "the change could not be confirmed (exit %s): %s" % (rc, out.strip()[-TAIL:])
            if rc == 3:
                res["rollback"]["outcome"] = "rolled_back"
        return res
    finally:
        if res["rollback"]["id"] and not res["success"] and res["rollback"]["outcome"] is None:
            rc, out = _run(_cli(fw, cfg, "rollback-now", res["rollback"]["id"]), cfg["wait"] + 60)
            log.append("$ netxfw rollback-now %s\n%s" % (res["rollback"]["id"], out))
            report = _json(out)
            if rc == 0:
                res["rollback"]["outcome"] = "rolled_back"
                res["rollback"]["actions"] = report.get("actions") or []
                res["rollback"]["kept_changes_by_others"] = report.get("kept_changes_by_others") or []
            else:
                res["rollback"]["outcome"] = "rollback_failed"
                res["error"] = "%s; the immediate rollback FAILED (the window's timer retries at its deadline): %s" % (
                    res["error"], out.strip()[-TAIL:])
        res["finished"] = time.time()
        res["duration"] = round(time.monotonic() - t0, 3)
        with open(os.path.join(directory, LOG), "w", encoding="utf-8") as stream:
            stream.write("\n".join(log))
        _write_json(os.path.join(directory, LAST), res)


def _commit(checkout):
    try:
        out = subprocess.run(["git", "-C", checkout, "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def loop(fw, path=None):
    """Without systemd: run every interval + random splay seconds (the settings are re-read each
    time), pid in pull/loop.pid. The systemd timer does the same where systemd runs."""
    os.makedirs(pull_dir(fw), mode=0o700, exist_ok=True)
    with open(os.path.join(pull_dir(fw), LOOP_PID), "w", encoding="ascii") as stream:
        stream.write("%d\n" % os.getpid())
    while True:
        cfg = load_config(fw, path)
        try:
            run_once(fw, cfg)
        except NetxfwError:
            pass  # another run holds the lock: it reports its own result
        time.sleep(cfg["interval"] + random.uniform(0, cfg["splay"]))
