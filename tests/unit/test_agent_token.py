"""The agent's token file (agent/netxfw_agent/auth.py) as an operator rotates and revokes it."""

import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "agent"))
from netxfw_agent import auth  # noqa: E402  pylint: disable=wrong-import-position


def bearer(token):
    return "Bearer " + token


def test_rotation_revocation_and_a_broken_file(tmp_path):
    path = str(tmp_path / "agent.token")
    first = auth.generate(path)
    tokens = auth.TokenFile(path)
    assert tokens.check(bearer(first)) and not tokens.check(bearer(first + "x")) and not tokens.check(first)

    second = auth.generate(path, force=True)  # rotation: no restart
    assert tokens.check(bearer(second)) and not tokens.check(bearer(first))

    os.chmod(path, 0o644)  # a rotation gone wrong: the last good token stays, nothing else gets in
    assert tokens.check(bearer(second))
    os.chmod(path, 0o600)

    os.remove(path)  # revoked: nothing is accepted
    assert not tokens.check(bearer(second)) and not tokens.check("Bearer ") and not tokens.check(None)

    third = auth.generate(path)
    assert tokens.check(bearer(third)) and not tokens.check(bearer(second))
