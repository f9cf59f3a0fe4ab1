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


def fake_cgroup_v1(tmp_path: Path, line: str, quotas: dict[str, tuple[str, str]]) -> Path:
    """cgroup v1 ``cpu`` hierarchies under tmp_path/cgroup (``quotas``: folder to
    ``cpu.cfs_quota_us`` and ``cpu.cfs_period_us``), as a hybrid or v1-only host mounts
    them; returns the /proc/self/cgroup file, holding ``line``."""
    root, proc = fake_cgroup(tmp_path, line, {})
    for folder, (quota, period) in quotas.items():
        where = root / folder
        where.mkdir(parents=True, exist_ok=True)
        (where / "cpu.cfs_quota_us").write_text(quota + "\n")
        (where / "cpu.cfs_period_us").write_text(period + "\n")
    return proc


V1_DOCKER = "\n".join(
    [
        "12:pids:/docker/abc",
        "4:cpu,cpuacct:/docker/abc",
        "1:name=systemd:/docker/abc",
        "0::/",  # a hybrid host's unified hierarchy, without the cpu controller
    ]
)


def test_a_cgroup_v1_quota_bounds_the_affinity(tmp_path):
    # docker --cpus 1.5 on a host whose cpu controller is on cgroup v1
    proc = fake_cgroup_v1(tmp_path, V1_DOCKER, {"cpu,cpuacct/docker/abc": ("150000", "100000")})
    root = tmp_path / "cgroup"
    assert cgroup_quota(root, proc) == 1.5
    assert usable_cores(affinity=lambda: 4, cgroup_root=root, self_cgroup=proc) == 1


def test_a_cgroup_v1_quota_at_the_mount_of_a_container_or_a_parent_counts(tmp_path):
    # inside the container its own cgroup is the mount's root; on the host a parent's
    # quota bounds its children
    proc = fake_cgroup_v1(tmp_path, "3:cpu:/docker/abc", {"cpu": ("200000", "100000")})
    assert cgroup_quota(tmp_path / "cgroup", proc) == 2.0
    unlimited = fake_cgroup_v1(tmp_path / "u", "3:cpu:/x", {"cpu/x": ("-1", "100000")})
    assert cgroup_quota(tmp_path / "u" / "cgroup", unlimited) is None


def test_unreadable_or_garbled_files_mean_no_quota(tmp_path):
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
