"""``tracehouse dump`` and ``tracehouse verify-export`` as commands, on their own data dir (embedded chdb):
the CLI opens ClickHouse, loads (here generates) the checkpoint key, writes one summary line per org when
stdout is not a terminal, and its manifest verifies with the key's public half."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from schemas.checkpoints import public_key_of

CLI = [sys.executable, "-m", "tracehouse.cli"]


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=120)


def test_dump_and_verify_from_the_command_line(tmp_path: Path) -> None:
    env = {**os.environ, "TRACEHOUSE_DATA_DIR": str(tmp_path / "data")}
    env.pop("TRACEHOUSE_CHECKPOINT_KEY", None)
    assert run("migrate", env=env).returncode == 0
    out = tmp_path / "dumps"
    nobody = run("dump", "--date", "2026-12-04", "--to", str(out), env=env)
    assert (nobody.returncode, nobody.stdout) == (0, "")  # no org has rows that day
    one = run("dump", "--date", "2026-12-04", "--org", "acme", "--to", str(out), env=env)
    manifest = out / "acme" / "2026-12-04" / "manifest.json"
    assert one.returncode == 0, one.stderr
    assert one.stdout == f"acme 2026-12-04: 0 events, 0 audit entries -> {manifest}\n"
    key = public_key_of(tmp_path / "data" / "checkpoint_key.pem")
    assert key is not None
    checked = run("verify-export", str(manifest), "--public-key", key, env=env)
    assert checked.returncode == 0 and "dump verified" in checked.stdout, checked.stdout
    bad = run("dump", "--date", "2026-12-32", "--to", str(out), env=env)
    assert bad.returncode == 2 and "--date" in bad.stderr
