"""kazoo's reconfig against a standalone server with reconfigEnabled at its default
(false, as since ZooKeeper 3.5.3): RECONFIGDISABLED, and /zookeeper/config empty, as a
standalone ZooKeeper has it. Ensembles are in tests/ensemble_reconfig.py."""

import pytest
from kazoo.exceptions import ReconfigDisabledError


def test_reconfig_is_disabled_by_default(kz):
    with pytest.raises(ReconfigDisabledError):
        kz.reconfig(joining=None, leaving="1", new_members=None)
    with pytest.raises(ReconfigDisabledError):
        kz.reconfig(joining=None, leaving=None,
                    new_members="server.1=127.0.0.1:2888:3888:participant;2181")


def test_standalone_config_node_is_empty_and_read_only(kz):
    data, stat = kz.get("/zookeeper/config")
    assert data == b""
    assert kz.get_acls("/zookeeper/config")[0][0].perms == 1  # READ for world:anyone
