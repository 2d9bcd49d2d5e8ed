"""The pre-flight on the job's own nodes, inside the training ranks before step 1: each GPU's
matmul rate and free memory, the links between nodes, the same software everywhere, storage
every node sees, and a checkpoint save + load rehearsal. Every finding names its node."""
