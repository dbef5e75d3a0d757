import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_embedded_bpf_source_matches_bpf_dir():
    result = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "gen_bpf_source.py"), "--check"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
