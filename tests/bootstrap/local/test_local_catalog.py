import contextlib
import os
import pwd

import psutil
import pytest
import sqlalchemy

from bootstrap.local.local_catalog import SERVER_USER, LocalCatalog, from_uri, main
from spark.catalog import JdbcAddress
from spark.settings import ConfigError


def user_tables(server: LocalCatalog) -> list[str]:
    """The tables of the catalog's database, as pyiceberg's SqlCatalog reaches it."""
    engine = sqlalchemy.create_engine(server.address.sqlalchemy_uri())
    try:
        with engine.connect() as connection:
            return list(
                connection.scalars(
                    sqlalchemy.text(
                        "SELECT table_name FROM information_schema.tables"
                        " WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"
                    )
                )
            )
    finally:
        engine.dispose()


def owners(processes: list[psutil.Process]) -> set[str]:
    """Their users; a backend that ends meanwhile (user_tables' connection) is left out."""
    users = set()
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            users.add(process.username())
    return users


def test_start_serves_the_database_and_stop_ends_all_its_processes(
    catalog_state_dir, unused_catalog_uri, test_env
) -> None:
    server = from_uri(unused_catalog_uri, catalog_state_dir)
    pid = server.start()
    try:
        assert server.start() == pid  # already running: same process
        assert server.responds()
        assert user_tables(server) == []  # the database exists, empty
        # The postmaster's group is its own; its background processes and backends each
        # get a session of their own (PostgreSQL's setsid), so they are followed by parent.
        postmaster = psutil.Process(pid)
        assert os.getpgid(pid) == pid
        children = postmaster.children(recursive=True)
        assert children  # checkpointer, walwriter, ..., the backend serving user_tables
        if os.geteuid() == 0:  # PostgreSQL refuses root: it runs as its system user
            assert owners([postmaster, *children]) == {SERVER_USER}
    finally:
        assert server.stop()
    assert not server.responds()
    assert [p.pid for p in [postmaster, *children] if p.is_running()] == []
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)  # no process group left either
    assert not server.stop()  # nothing left to stop


@pytest.mark.skipif(os.geteuid() != 0, reason="the server runs as another user under root only")
def test_under_root_the_data_goes_where_the_server_user_can_reach_it(
    catalog_state_dir, unused_catalog_uri, test_env
) -> None:
    """A clone under root's home (0700): PostgreSQL's system user cannot enter .fruits/ there,
    and initdb would stop at "Permission denied"."""
    server = from_uri(unused_catalog_uri, catalog_state_dir)
    assert catalog_state_dir.stat().st_mode & 0o777 == 0o700
    assert not server.data_dir.is_relative_to(catalog_state_dir)
    server.start()
    try:
        assert server.responds() and user_tables(server) == []
        assert server.data_dir.stat().st_uid == pwd.getpwnam(SERVER_USER).pw_uid
    finally:
        assert server.stop()
    assert not server.data_dir.exists()  # made anew at each start: nothing left behind
    catalog_state_dir.chmod(0o711)  # others may enter: the data stays under the state folder
    assert server.data_dir.parent == catalog_state_dir


def test_every_start_is_a_fresh_table_less_catalog(
    catalog_state_dir, unused_catalog_uri, test_env, tmp_path
) -> None:
    """Like the local S3 server, whose objects live in memory: a catalog that outlived them
    would name files that are gone."""
    from pyiceberg.catalog.sql import SqlCatalog

    server = from_uri(unused_catalog_uri, catalog_state_dir)
    server.start()
    try:
        catalog = SqlCatalog(
            "fruits", uri=server.address.sqlalchemy_uri(), warehouse=tmp_path.as_uri()
        )
        catalog.create_namespace("fruits")
        assert catalog.list_namespaces() == [("fruits",)]
        assert user_tables(server)  # pyiceberg's catalog tables
        catalog.engine.dispose()
    finally:
        server.stop()
    server.start()
    try:
        assert user_tables(server) == []
    finally:
        server.stop()


def test_refuses_a_port_someone_else_serves(catalog_state_dir, local_catalog) -> None:
    with pytest.raises(ConfigError, match="something else"):
        LocalCatalog(local_catalog.address, catalog_state_dir).start()


def test_only_loopback_hosts() -> None:
    for host in ("10.0.0.5", "0.0.0.0", "example.org"):
        address = JdbcAddress.parse(f"jdbc:postgresql://{host}:9071/fruits?user=fruits")
        with pytest.raises(ConfigError, match="loopback"):
            LocalCatalog(address)


def test_a_deployment_without_a_catalog_uri_has_no_local_catalog() -> None:
    with pytest.raises(ConfigError, match="FRUITS_CATALOG_URI is not set"):
        from_uri(None)


def test_cli_status_start_stop(
    catalog_state_dir, unused_catalog_uri, monkeypatch, capsys, test_env
) -> None:
    monkeypatch.setenv("FRUITS_CATALOG_URI", unused_catalog_uri)
    server = from_uri(unused_catalog_uri, catalog_state_dir)
    assert main(["status"], catalog_state_dir) == 3
    assert main(["start"], catalog_state_dir) == 0
    try:
        assert main(["status"], catalog_state_dir) == 0
        server_pid = server.pid()
        assert main(["start"], catalog_state_dir) == 0  # already running: the same server
        assert server.pid() == server_pid and user_tables(server) == []
    finally:
        assert main(["stop"], catalog_state_dir) == 0
    assert main(["stop"], catalog_state_dir) == 0
    out = capsys.readouterr().out
    assert "not running on port" in out and "running on port" in out
    assert out.count(f"local catalog on port {server.address.port} (pid {server_pid})") == 2
    assert out.count("stopped") == 1 and out.rstrip().endswith("not running")
