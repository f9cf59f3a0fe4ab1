"""The cores the daemon may use: affinity and the cgroup v2 quota, from fake cgroup files."""

from __future__ import annotations

from pathlib import Path

from edge_runtime.daemon.cores import cgroup_quota, usable_cores


def fake_cgroup(tmp_path: Path, line: str, quotas: dict[str, str]) -> tuple[Path, Path]:
    """A cgroup mount under tmp_path with ``cpu.max`` files at the given relative folders,
    and a /proc/self/cgroup holding ``line``."""
    root = tmp_path / "cgroup"
    root.mkdir(parents=True)
    for folder, text in quotas.items():
        where = root / folder
        where.mkdir(parents=True, exist_ok=True)
        (where / "cpu.max").write_text(text + "\n")
    proc = tmp_path / "self_cgroup"
    proc.write_text(line + "\n")
    return root, proc


def cores(tmp_path: Path, affinity: int, line: str, quotas: dict[str, str]) -> int:
    root, proc = fake_cgroup(tmp_path, line, quotas)
    return usable_cores(affinity=lambda: affinity, cgroup_root=root, self_cgroup=proc)


def test_without_a_quota_the_affinity_counts(tmp_path):
    assert cores(tmp_path, 3, "0::/system.slice/edge.service", {"system.slice": "max 100000"}) == 3


def test_a_container_quota_bounds_the_affinity(tmp_path):
    # in a container's cgroup namespace the process sits at "/" of its own mount
    assert cores(tmp_path, 8, "0::/", {".": "200000 100000"}) == 2


def test_the_tightest_quota_on_the_path_wins_and_fractions_round_down(tmp_path):
    quotas = {
        "system.slice": "150000 100000",
        "system.slice/edge.service": "400000 100000",
    }
    assert cores(tmp_path, 4, "0::/system.slice/edge.service", quotas) == 1


def test_a_quota_under_one_core_still_counts_one(tmp_path):
    assert cores(tmp_path, 4, "0::/", {".": "20000 100000"}) == 1


def test_a_quota_above_the_affinity_leaves_it(tmp_path):
    assert cores(tmp_path, 2, "0::/", {".": "800000 100000"}) == 2


def test_cgroup_v1_or_unreadable_files_mean_no_quota(tmp_path):
    root, proc = fake_cgroup(tmp_path, "4:cpu,cpuacct:/docker/abc", {".": "100000 100000"})
    assert cgroup_quota(root, proc) is None
    assert cgroup_quota(root, tmp_path / "absent") is None
    garbled = fake_cgroup(tmp_path / "g", "0::/", {".": "lots 100000"})
    assert cgroup_quota(*garbled) is None


def test_a_path_leading_out_of_the_mount_is_ignored(tmp_path):
    root, proc = fake_cgroup(tmp_path, "0::/../..", {})
    (tmp_path / "cpu.max").write_text("100000 100000\n")
    assert cgroup_quota(root, proc) is None


def test_this_machine_has_at_least_one_core():
    assert usable_cores() >= 1
