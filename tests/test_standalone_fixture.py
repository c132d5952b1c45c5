"""Guards the standalone-cluster test helper: it must start a Master with one 2-core Worker."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.standalone import alive_workers, cluster_state, standalone_cluster


@pytest.mark.spark
def test_standalone_cluster_reports_one_alive_worker_with_two_cores(tmp_path: Path) -> None:
    with standalone_cluster(tmp_path) as cluster:
        assert cluster.master_url.startswith("spark://127.0.0.1:")
        state = cluster_state(cluster.ui_url)
        assert state is not None
        assert state["status"] == "ALIVE"
        workers = alive_workers(state)
        assert len(workers) == 1
        assert workers[0]["cores"] == 2
    assert cluster_state(cluster.ui_url) is None  # the master is gone after exit
