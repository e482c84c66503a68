"""What only a PostgreSQL store has: URLs, store names, credentials, the server, artefacts.

Its semantics as a store are the contract suite's (``test_store_contract.py``); here the
rest, against the real server of ``XP_TEST_POSTGRES_URL`` (a database of this test session)
where one is needed: a server that refuses or goes away, a password that must never show, a
schema of something else, libpq's own environment, ``load()`` and the command line.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from backends import Backend, make_backend, with_database, with_store
from cli_helpers import cli, user_error
from processes import Processes

import pytest_experiments
from pytest_experiments import Store, StoreError
from pytest_experiments.model import MetricPoint, RunEnd, RunStart, SessionStart
from pytest_experiments.store.server_url import is_server_url, masked, split_store

SECRET = "hunter2-secret"


@pytest.fixture
def pg(tmp_path: Path, postgres_database: str) -> Backend:
    """A new PostgreSQL store location (not created yet) in this session's test database."""
    return make_backend("postgresql", tmp_path, postgres_database)


def with_password(url: str, password: str = SECRET) -> str:
    """``url`` with ``password`` written in it (the test server trusts local users: any password works)."""
    parts = urlsplit(url)
    user, _, host = parts.netloc.rpartition("@")
    return urlunsplit(parts._replace(netloc=f"{user.partition(':')[0]}:{password}@{host}"))


def refused(url: str, **options: object) -> str:
    """The one line ``Store.open(url)`` is refused with."""
    with pytest.raises(StoreError) as error:
        Store.open(url, **options)  # type: ignore[arg-type]
    message = str(error.value)
    assert "\n" not in message
    return message


def record_two_runs(store: Store) -> list[str]:
    session = SessionStart("session-one", time.time(), socket.gethostname(), os.getpid(), {"command": "pytest"})
    store.record_session(session)
    ids = []
    for point in (1, 2):
        run_id = f"run-{point}"
        store.start_run(
            RunStart(run_id, session.session_id, f"test_m.py::test_p[{point}]", "test_m.py", "test_p", f"h{point}",
                     {"lr": point / 10}, time.time(), "main", session.host, session.pid, f"runs/test_p/{run_id}")
        )  # fmt: skip
        end = RunEnd(run_id, "passed", time.time(), 0.5, {"acc": point}, {"acc": float(point)},
                     [MetricPoint("loss", 0, 0, 1.0)], {}, {})  # fmt: skip
        store.finish_run(end)
        ids.append(run_id)
    store.finish_session(session.session_id, time.time(), 0)
    return ids


# -- URLs, without a server -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://user:pw@host:5432/db", "postgresql://user:***@host:5432/db"),
        ("postgres://user:p%40ss@host/db?store=x", "postgres://user:***@host/db?store=x"),
        ("postgresql://host/db?password=pw&store=x", "postgresql://host/db?password=***&store=x"),
        ("postgresql://user@host/db", "postgresql://user@host/db"),
        ("postgresql:///db?service=mine", "postgresql:///db?service=mine"),
    ],
)
def test_a_password_is_masked(url: str, shown: str) -> None:
    assert masked(url) == shown


def test_the_store_name_is_taken_out_of_the_url_libpq_gets() -> None:
    assert split_store("postgresql://u@h/db") == ("postgresql://u@h/db", "experiments")
    assert split_store("postgresql://u@h/db?sslmode=require&store=sweep_2") == (
        "postgresql://u@h/db?sslmode=require",
        "sweep_2",
    )
    assert is_server_url("postgresql://h/db")
    assert is_server_url("POSTGRES://h/db")
    assert not is_server_url("results/store")
    assert not is_server_url(Path("postgresql:/h/db"))


@pytest.mark.parametrize("name", ["Sweep", "a-b", "1st", "pg_catalog", "x" * 64, "", "a;drop table runs"])
def test_a_store_name_must_be_a_plain_identifier(name: str) -> None:
    message = refused(f"postgresql://u:{SECRET}@127.0.0.1:1/db?store={name}")
    assert "use lowercase letters, digits and _" in message
    assert SECRET not in message


@pytest.mark.parametrize("url", [f"postgresql://u:{SECRET}@[::1/db", f"postgresql://u:{SECRET}@h:port/db"])
def test_a_malformed_url_is_one_line_without_its_password(url: str) -> None:
    message = refused(url)
    assert message.startswith(f"cannot connect to the store {masked(url)} (")
    assert SECRET not in message


def test_without_psycopg_the_error_names_the_extra(tmp_path: Path) -> None:
    # A real interpreter where psycopg cannot be imported, as without the extra.
    procs = Processes(tmp_path)
    try:
        code, output = procs.finish(
            procs.start_script(
                "import sys; sys.modules['psycopg'] = None\n"
                "from pytest_experiments import Store, StoreError\n"
                "try:\n"
                "    Store.open(sys.argv[1])\n"
                "except StoreError as error:\n"
                "    print(error)\n",
                f"postgresql://u:{SECRET}@127.0.0.1/db",
            )
        )
    finally:
        procs.cleanup()
    assert code == 0, output
    assert output == (
        "the PostgreSQL store postgresql://u:***@127.0.0.1/db needs psycopg: pip install 'pytest-experiments[postgres]'\n"
    )


def test_artifacts_are_for_server_stores(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="artifacts= is for a server store"):
        Store.open(tmp_path / "store", create=True, artifacts=tmp_path / "elsewhere")
    assert not (tmp_path / "store").exists()


# -- the server -------------------------------------------------------------------------------


def test_a_server_that_is_down_or_refuses_is_one_line(postgres_database: str) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    down = urlunsplit(urlsplit(with_password(postgres_database))._replace(netloc=f"postgres:{SECRET}@127.0.0.1:{port}"))
    cases = {
        down: "Connection refused",
        with_database(postgres_database, "xp_no_such_database"): 'database "xp_no_such_database" does not exist',
        postgres_database.replace("postgres@", "xp_no_such_role@", 1): 'role "xp_no_such_role" does not exist',
    }
    for url, reason in cases.items():
        for options in ({}, {"create": True}, {"readonly": True}):
            message = refused(url, **options)
            assert message.startswith(f"cannot connect to the store {masked(url)} (")
            assert reason in message
            assert message.endswith("; check the server and the URL, or choose another --xp-store")
            assert SECRET not in message


def test_a_password_never_appears(pg: Backend, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    secret_url = with_password(pg.location)
    query_url = f"{pg.location}&password={SECRET}"
    with Store.open(secret_url, create=True, artifacts=pg.artifacts) as store:
        assert SECRET not in repr(store)
        assert store.location == masked(secret_url)
        assert ":***@" in store.location
        record_two_runs(store)
    with Store.open(query_url, artifacts=pg.artifacts) as store:
        assert SECRET not in repr(store)
        assert "password=***" in store.location
    # The command line reads it and says where it is, masked.
    code, out, err = cli(capsys, "status", "--store", secret_url)
    assert code == 0, err
    assert SECRET not in out + err
    assert f"store {masked(secret_url)}" in out
    # Refusals (a newer schema) and errors name the store masked.
    pg.set_schema_version(99)
    for url in (secret_url, query_url):
        message = refused(url)
        assert "newer than this pytest-experiments reads" in message
        assert masked(url) in message
        assert SECRET not in message
        line = user_error(capsys, "runs", "--store", url)
        assert SECRET not in line
        assert masked(url) in line
        with pytest.raises(StoreError) as error:
            pytest_experiments.load(url)
        assert SECRET not in str(error.value)


def test_a_connection_lost_while_writing_is_one_line(pg: Backend) -> None:
    with pg.open(create=True) as store, pg.open(create=True) as other:
        record_two_runs(store)
        # The server ends this store's connections (as a restart or an administrator would).
        count = pg._query(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name = 'pytest-experiments' AND pid != pg_backend_pid()"
        )[0][0]
        assert count == 2
        with pytest.raises(StoreError) as error:
            store.heartbeat("session-one")
        message = str(error.value)
        assert message.startswith(f"cannot write the store {pg.location} (")
        assert "\n" not in message
        with pytest.raises(StoreError, match=r"^cannot read the store .*; check it, or choose another --xp-store$"):
            other.runs()
    with pg.open() as store:  # a new connection works again
        assert len(store.runs()) == 2


# -- store names and schemas ------------------------------------------------------------------


def test_store_names_keep_projects_apart_in_one_database(pg: Backend, postgres_database: str, tmp_path: Path) -> None:
    with pg.open(create=True) as store:
        record_two_runs(store)
    neighbour = with_store(postgres_database, pg.schema + "_neighbour")
    with Store.open(neighbour, create=True, artifacts=tmp_path / "neighbour") as other:
        assert other.runs() == []
        assert other.sessions() == []
    # Without a name: the store "experiments" of the database.
    with Store.open(postgres_database, create=True, artifacts=tmp_path / "default") as default:
        assert default.runs() == []
    with pg.open() as store:
        assert [run.run_id for run in store.runs()] == ["run-1", "run-2"]
    assert pg._query("SELECT count(*) FROM pg_namespace WHERE nspname = 'experiments'") == [(1,)]


def test_a_schema_of_something_else_is_refused_and_left_alone(pg: Backend) -> None:
    pg._execute(f'CREATE SCHEMA "{pg.schema}"')
    pg._execute(f'CREATE TABLE "{pg.schema}".invoices (id integer)')
    for options in ({}, {"create": True}, {"readonly": True}):
        message = refused(pg.location, artifacts=pg.artifacts, **options)
        assert message == (
            f"schema '{pg.schema}' at {pg.location} holds tables of something else, not an experiment store; "
            "choose another store name (?store=NAME)"
        )
    tables = pg._query("SELECT tablename FROM pg_tables WHERE schemaname = %s", (pg.schema,))
    assert tables == [("invoices",)]


def test_an_empty_schema_becomes_a_store(pg: Backend) -> None:
    pg._execute(f'CREATE SCHEMA "{pg.schema}"')
    assert "no experiment store" in refused(pg.location, artifacts=pg.artifacts)
    with pg.open(create=True) as store:
        record_two_runs(store)
    with pg.open(readonly=True) as store:
        assert len(store.runs()) == 2


def test_libpq_reads_its_own_environment(pg: Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The URL names only a service: host, port, user and database come from libpq's service file.
    url = urlsplit(pg.database_url)
    services = tmp_path / "pg_service.conf"
    services.write_text(
        f"[xp_test]\nhost={url.hostname}\nport={url.port or 5432}\nuser={url.username}\ndbname={url.path[1:]}\n"
    )
    monkeypatch.setenv("PGSERVICEFILE", str(services))
    with Store.open(f"postgresql://?service=xp_test&store={pg.schema}", create=True, artifacts=pg.artifacts) as store:
        record_two_runs(store)
    with pg.open() as store:
        assert len(store.runs()) == 2


# -- artefacts --------------------------------------------------------------------------------


def test_run_folders_live_under_the_artifacts_root(
    pg: Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    # Reading creates nothing, not even the artefacts folder.
    with pg.open(create=True):
        pass
    with Store.open(pg.location, readonly=True) as reader:
        assert reader.root == tmp_path / ".experiments-artifacts"
    assert not (tmp_path / ".experiments-artifacts").exists()
    # Without artifacts=: ./.experiments-artifacts, made when the store is opened to record.
    with Store.open(pg.location, create=True) as store:
        assert store.root == tmp_path / ".experiments-artifacts"
        assert (store.root / "runs").is_dir()
        assert (store.root / ".gitignore").read_text().splitlines()[-1] == "*"
        record_two_runs(store)
        assert {run.dir for run in store.runs()} == {store.root / "runs/test_p/run-1", store.root / "runs/test_p/run-2"}
    # Paths are stored relative to the root: another host (another root) finds them under its own.
    with Store.open(pg.location, readonly=True, artifacts=tmp_path / "mounted-elsewhere") as store:
        assert store.run("run-1").dir == tmp_path / "mounted-elsewhere/runs/test_p/run-1"


def test_an_artifacts_folder_that_cannot_be_made_is_one_line(pg: Backend, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    message = refused(pg.location, create=True, artifacts=blocker / "artifacts")
    assert message.startswith(
        f"cannot create the artefacts folder {blocker / 'artifacts'} of the store {pg.location} ("
    )


# -- load() and the command line --------------------------------------------------------------


def test_load_reads_a_postgres_store(pg: Backend) -> None:
    with pg.open(create=True) as store:
        record_two_runs(store)
    frame = pytest_experiments.load(pg.location)
    assert list(frame["run_id"]) == ["run-1", "run-2"]
    assert list(frame["metrics.acc"]) == [1.0, 2.0]
    assert list(frame["params.lr"]) == [0.1, 0.2]
    assert set(frame["status"]) == {"passed"}
    assert len(pytest_experiments.load(pg.location, history=True, experiment="test_p")) == 2


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX")
def test_the_command_line_reads_a_postgres_store(pg: Backend, capsys: pytest.CaptureFixture[str]) -> None:
    assert "no experiment store at" in user_error(capsys, "runs", "--store", pg.location)
    with pg.open(create=True) as store:
        record_two_runs(store)
    code, out, err = cli(capsys, "runs", "--store", pg.location)
    assert code == 0, err
    assert "test_m.py::test_p[1]" in out or "test_p" in out
    code, out, err = cli(capsys, "sessions", "--store", pg.location)
    assert (code, err) == (0, "")
    assert "session-one"[:8] in out
    code, out, err = cli(capsys, "show", "run-2", "--store", pg.location)
    assert (code, err) == (0, "")
    assert "run-2" in out


def test_a_version_1_store_is_read_without_tags_and_migrated_by_a_writer(pg: Backend) -> None:
    from psycopg import sql

    with pg.open(create=True) as store:
        session = SessionStart("s", time.time(), socket.gethostname(), os.getpid(), {})
        store.record_session(session)
        start = RunStart("r1", "s", "m.py::t", "m.py", "t", "h", {}, time.time(), "main", "host", 1, "runs/t/r1")
        store.start_run(start)
        store.finish_run(RunEnd("r1", "passed", time.time(), 0.1, None, {}, [], {}, {}))
    # Back to what pytest-experiments wrote before tags, notes and the artefact registry.
    runs = sql.Identifier(pg.schema, "runs")
    for statement in (
        sql.SQL("ALTER TABLE {} DROP COLUMN tags, DROP COLUMN notes").format(runs),
        sql.SQL("DROP TABLE {}").format(sql.Identifier(pg.schema, "artifacts")),
        sql.SQL("DROP TABLE {}").format(sql.Identifier(pg.schema, "run_attempts")),
    ):
        pg._execute(statement)
    pg.set_schema_version(1)
    with pg.open(readonly=True) as reader:
        [run] = reader.runs(history=True)
        assert (run.tags, run.notes) == ({}, [])
        assert reader.run("r1").artifacts == []
    with pg.open() as writer, pytest.raises(StoreError, match="older pytest-experiments"):
        writer.set_tags("r1", {"a": "b"})
    with pg.open(create=True) as writer:
        assert writer.set_tags("r1", {"a": "b"}) == {"a": "b"}
        assert writer.delete_runs(["r1"]) == 1
