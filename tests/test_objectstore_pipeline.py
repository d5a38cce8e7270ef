"""End to end on object storage: the demo project, unchanged but for its `lake:` line, runs on an S3 server.

`medallion-nb run` with real papermill kernels against moto's S3 server on 127.0.0.1, the
credentials only in the environment; every table equal to a run of the same project on
a local lake, gold equal to plain SQL over the raw files.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import medallion_nb as mnb
from medallion_nb.objectstore import ObjectPath
from tests.conftest import copy_demo_project
from tests.test_pipeline import expected_gold

pytestmark = pytest.mark.notebook


def cli(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "medallion_nb", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=900, env=env)


def tables(project: Path) -> dict[str, list[tuple]]:
    """Every table's rows, sorted, without the columns that differ per run (load time, run id)."""
    out = {}
    with mnb.connect(project) as lake:
        for name in lake.tables():
            rel = lake.table(name)
            keep = [c for c in rel.columns if c not in ("_ingested_at", "_run_id")]
            out[name] = sorted(rel.project(", ".join(f'"{c}"' for c in keep)).fetchall(), key=repr)
    return out


def test_the_demo_runs_on_s3_by_changing_one_line_and_matches_the_local_run(s3_server, tmp_path, monkeypatch):
    bucket = s3_server.bucket()
    local = copy_demo_project(tmp_path / "local")
    remote = copy_demo_project(tmp_path / "remote")
    config = (remote / "medallion.yaml").read_text(encoding="utf-8")
    changed = [line if not line.startswith("lake:") else f"lake: s3://{bucket}/shop" for line in config.splitlines()]
    assert sum(a != b for a, b in zip(config.splitlines(), changed, strict=True)) == 1
    (remote / "medallion.yaml").write_text("\n".join(changed) + "\n", encoding="utf-8")
    env = {**os.environ, **s3_server.env()}

    ran = cli("run", "--project", str(remote), "--run-id", "s3-first", cwd=remote, env=env)
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    ran_local = cli("run", "--project", str(local), "--run-id", "local-first", cwd=local,
                    env={k: v for k, v in os.environ.items() if not k.startswith("AWS_")})
    assert ran_local.returncode == 0, ran_local.stdout[-3000:] + ran_local.stderr[-3000:]
    assert not (remote / "data" / "lake").exists()  # nothing went to the local disk

    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    on_s3, on_disk = tables(remote), tables(local)
    assert sorted(on_s3) == sorted(on_disk)
    assert len(on_s3) == 14
    for name in on_disk:
        assert on_s3[name] == on_disk[name], name
    with mnb.connect(remote, snapshot="published") as lake:
        assert lake.manifest.run_id == "s3-first"
        assert lake.table("gold.daily_sales").project("order_date, orders, units, revenue, customers") \
            .order("1").fetchall() == expected_gold(remote / "data" / "raw")["daily_sales"]
    published = ObjectPath.parse(f"s3://{bucket}/shop/_medallion/published.json")
    assert published.exists()

    # Nothing new: a second run finds every notebook up to date (its state is on S3 too).
    again = cli("run", "--project", str(remote), "--run-id", "s3-second", cwd=remote, env=env)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert again.stdout.count("up to date") >= 3

    # The credentials are in no artefact of the runs.
    secret = s3_server.secret_key
    for path in (remote / "runs").rglob("*"):
        if path.is_file():
            assert secret not in path.read_text(encoding="utf-8", errors="replace"), path
    assert secret not in ran.stdout + ran.stderr

    # Export and vacuum work on it from the command line.
    exported = cli("export", "--project", str(remote), "--out", str(tmp_path / "export"), cwd=remote, env=env)
    assert exported.returncode == 0, exported.stderr
    assert sorted(p.name for p in (tmp_path / "export").glob("*.parquet")) == [
        "customer_lifetime_value.parquet", "daily_sales.parquet", "revenue_by_category_month.parquet"]
    vacuumed = cli("vacuum", "--project", str(remote), "--retain-hours", "0", cwd=remote, env=env)
    assert vacuumed.returncode == 0, vacuumed.stderr
    assert tables(remote) == on_s3
    shutil.rmtree(tmp_path / "export")
