"""kazoo's reconfig against a standalone server with reconfigEnabled=true: there is no
ensemble to change, so it is UNIMPLEMENTED (ZooKeeper's PrepRequestProcessor finds no
LeaderZooKeeperServer)."""

import pytest
from kazoo.exceptions import UnimplementedError

SERVER_EXTRA_CFG = ["reconfigEnabled=true"]


def test_reconfig_on_a_standalone_server_is_unimplemented(kz):
    with pytest.raises(UnimplementedError):
        kz.reconfig(joining=None, leaving="1", new_members=None)
