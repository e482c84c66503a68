"""An SQLite store on a network filesystem is refused at start: the mount table read, faked here."""

from __future__ import annotations

from pathlib import Path

import pytest
from processes import store_of

from pytest_experiments.store.mounts import MOUNT_TABLE_ENV, filesystem_of, network_filesystem, parse_mount_table

pytestmark = pytest.mark.usefixtures("clean_env")

MOUNTINFO = """\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard
40 27 0:50 / /home rw,relatime shared:12 - nfs4 fileserver:/export/home rw,vers=4.2
41 40 0:51 / /home/ann/scratch rw,relatime - ext4 /dev/sdb1 rw
42 27 0:52 / /mnt/data rw,relatime - lustre 10.0.0.1@tcp:/data rw
43 27 0:53 / /mnt/my\\040share rw,relatime - cifs //server/share rw
44 27 0:54 / /srv rw - ext4 /dev/sdc1 rw
45 44 0:55 / /srv rw - fuse.sshfs ann@host:/srv rw
"""
MOUNTS = """\
/dev/vda / ext4 rw,relatime 0 0
fileserver:/export /projects nfs rw,vers=3 0 0
"""


@pytest.mark.parametrize(
    ("path", "found"),
    [
        ("/", ("ext4", "/")),
        ("/tmp/x", ("ext4", "/")),
        ("/home/ann/project/.experiments", ("nfs4", "/home")),
        ("/home/ann/scratch/.experiments", ("ext4", "/home/ann/scratch")),  # a local disk mounted inside
        ("/homework", ("ext4", "/")),  # a prefix of the name is not a mount point prefix
        ("/mnt/data", ("lustre", "/mnt/data")),
        ("/mnt/my share/store", ("cifs", "/mnt/my share")),  # the kernel's octal escapes
        ("/srv/store", ("fuse.sshfs", "/srv")),  # the later mount on one point hides the earlier
    ],
)
def test_the_longest_mount_point_prefix_decides(path: str, found: tuple[str, str]) -> None:
    assert filesystem_of(path, MOUNTINFO) == found


def test_proc_mounts_format_is_read_too() -> None:
    assert parse_mount_table(MOUNTS) == [("/", "ext4"), ("/projects", "nfs")]
    assert network_filesystem("/projects/a/.experiments", MOUNTS) == ("nfs", "/projects")
    assert network_filesystem("/data/.experiments", MOUNTS) is None


def test_local_filesystems_pass() -> None:
    assert network_filesystem("/tmp/store", MOUNTINFO) is None
    assert network_filesystem("/home/ann/scratch/store", MOUNTINFO) is None
    assert network_filesystem("/anything", "garbage\n\n") is None  # an unreadable table refuses nothing


def fake_table(tmp_path: Path, folder: Path, fstype: str) -> Path:
    """A mount table with ``folder`` mounted as ``fstype`` over a local root."""
    table = tmp_path / "mountinfo"
    table.write_text(
        f"27 1 254:0 / / rw - ext4 /dev/vda rw\n40 27 0:50 / {folder.resolve()} rw - {fstype} server:/export rw\n"
    )
    return table


EXPERIMENT = """
    import pytest

    @pytest.mark.grid(a=[1, 2])
    def test_g(xp, a):
        xp.log_metric("m", a)
"""


def test_a_store_on_nfs_is_refused_at_start_untouched(
    pytester: pytest.Pytester, tmp_path_factory: pytest.TempPathFactory
) -> None:
    pytester.makepyfile(test_sweep=EXPERIMENT)
    pytester.runpytest().assert_outcomes(passed=2)
    database = store_of(pytester) / "experiments.sqlite"
    before = sorted(path.name for path in store_of(pytester).iterdir()), database.read_bytes()
    table = fake_table(tmp_path_factory.mktemp("mounts"), pytester.path, "nfs4")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(MOUNT_TABLE_ENV, str(table))
        refused = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert refused.ret == pytest.ExitCode.USAGE_ERROR
    refused.stderr.fnmatch_lines(
        [
            f"ERROR: xp: {store_of(pytester).resolve()} is on a network filesystem (nfs4, mounted at "
            f"{pytester.path.resolve()}), *; use a PostgreSQL store (--xp-store=postgresql://...), or one SQLite "
            "store per node on a local disk (--xp-shard) merged afterwards (pytest-experiments merge)"
        ]
    )
    assert "Traceback" not in refused.stderr.str()
    assert (sorted(path.name for path in store_of(pytester).iterdir()), database.read_bytes()) == before


def test_a_new_store_on_nfs_is_refused_before_anything_is_created(
    pytester: pytest.Pytester, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(test_sweep=EXPERIMENT)
    monkeypatch.setenv(MOUNT_TABLE_ENV, str(fake_table(tmp_path_factory.mktemp("mounts"), pytester.path, "lustre")))
    result = pytester.runpytest_subprocess("-n", "2", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: xp: * is on a network filesystem (lustre, mounted at *"])
    assert not store_of(pytester).exists()


def test_a_store_on_a_local_disk_below_a_network_mount_is_fine(
    pytester: pytest.Pytester, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(test_sweep=EXPERIMENT)
    table = fake_table(tmp_path_factory.mktemp("mounts"), pytester.path.parent, "nfs")
    local = pytester.path / "scratch"
    local.mkdir()
    table.write_text(table.read_text() + f"41 40 0:51 / {local.resolve()} rw - xfs /dev/sdb1 rw\n")
    monkeypatch.setenv(MOUNT_TABLE_ENV, str(table))
    result = pytester.runpytest_subprocess("--xp-store=scratch/.experiments", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
