"""trainer.distributed.world_ranks.WorldRanks: the launcher's variables, read once."""

from __future__ import annotations

from trainer.distributed.world_ranks import WorldRanks


def test_a_plain_process_is_rank_zero_of_one():
    world = WorldRanks.from_env({})
    assert world == WorldRanks(rank=0, world_size=1, local_rank=0, local_world_size=1, node_rank=0)
    assert world.is_main and not world.distributed


def test_torchrun_variables():
    env = {"RANK": "5", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "4",
           "GROUP_RANK": "1"}
    world = WorldRanks.from_env(env)
    assert (world.rank, world.world_size, world.local_rank, world.local_world_size,
            world.node_rank) == (5, 8, 1, 4, 1)
    assert world.distributed and not world.is_main


def test_without_group_rank_the_node_follows_from_the_rank():
    world = WorldRanks.from_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_WORLD_SIZE": "2"})
    assert world.node_rank == 1
