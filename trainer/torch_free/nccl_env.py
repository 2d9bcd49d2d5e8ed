"""What `ft node` tells the trainer about NCCL's log and the fabric it expects (env names).

`ft node` points NCCL's INFO log at one file per process when the user set no NCCL_DEBUG,
and says which fabric the job should use between nodes; after the first collective the
trainer reads the file and prints the transport NCCL chose (trainer/distributed/nccl_log.py).
"""

NCCL_LOG_MARKER = "FT_NCCL_LOG"  # "ft": ft node set NCCL_DEBUG / _SUBSYS / _FILE itself
FABRIC_EXPECTED = "FT_FABRIC_EXPECTED"  # infiniband | roce | efa | tcp | single-host
FABRIC_EXPECTED_BY = "FT_FABRIC_EXPECTED_BY"  # who expects it, for the message
# The profile's expected_internode_busbw_gbs: the pre-flight holds each node pair to it.
FABRIC_EXPECTED_BUSBW = "FT_FABRIC_EXPECTED_BUSBW_GBS"
NCCL_LOG_SUBSYS = "INIT,NET"  # the network choice, its devices and each connection's path
NCCL_LOG_FILE_NAME = "nccl.%h.%p.log"  # NCCL expands %h (host) and %p (pid)
