# SPDX-License-Identifier: GPL-2.0-or-later
"""The agent's bearer token: a root-only file (default /etc/netxfw/agent.token)."""

import hmac
import os
import secrets
import stat
import tempfile

DEFAULT_TOKEN_FILE = "/etc/netxfw/agent.token"
MIN_LENGTH = 16


class TokenError(Exception):
    pass


def generate(path=DEFAULT_TOKEN_FILE, force=False):
    """Write a new random token (mode 0600, atomically) and return it."""
    if os.path.exists(path) and not force:
        raise TokenError("%s already exists; pass --force to replace it (clients using the old token stop "
                         "working)" % path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, mode=0o700, exist_ok=True)
    token = secrets.token_urlsafe(32)
    fd, temp = tempfile.mkstemp(prefix=".agent.token.", dir=directory)  # 0600
    try:
        with os.fdopen(fd, "w") as stream:
            stream.write(token + "\n")
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temp, 0o600)
        os.replace(temp, path)
    except BaseException:
        if os.path.exists(temp):
            os.unlink(temp)
        raise
    return token


def read(path=DEFAULT_TOKEN_FILE):
    """The token in `path`; refuses a file others can read, or a short token."""
    try:
        st = os.stat(path)
        with open(path) as stream:
            token = stream.read().strip()
    except FileNotFoundError:
        raise TokenError("no API token at %s: create one with `netxfw token generate --token-file %s`"
                         % (path, path))
    except OSError as exc:
        raise TokenError("cannot read the API token %s: %s" % (path, exc.strerror))
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise TokenError("%s is readable by others (mode %o): make it root-only with chmod 600 %s"
                         % (path, stat.S_IMODE(st.st_mode), path))
    if len(token) < MIN_LENGTH or any(c.isspace() for c in token):
        raise TokenError("the token in %s must be at least %d characters with no spaces" % (path, MIN_LENGTH))
    return token


class TokenFile:
    """The token, re-read when the file changes (rotation without a restart). A file that is gone
    revokes it (nothing is accepted until a token is generated again); a file that cannot be used
    (unreadable, readable by others, too short: a rotation gone wrong) keeps the last good token."""

    def __init__(self, path):
        self.path = path
        self._stamp = None
        self._token = None
        self.reload()

    def reload(self):
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._stamp = self._token = None
            raise
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if stamp != self._stamp:
            self._token = read(self.path).encode()
            self._stamp = stamp

    def check(self, header):
        """True when an Authorization header carries the token (constant-time compare)."""
        try:
            self.reload()
        except (OSError, TokenError):
            pass  # keep the last good token
        scheme, dummy, offered = (header or "").partition(" ")
        if self._token is None or scheme.lower() != "bearer":  # auth schemes are case-insensitive (RFC 9110 11.1)
            return False
        offered = offered.strip().encode("utf-8", "replace")
        return hmac.compare_digest(offered, self._token)
