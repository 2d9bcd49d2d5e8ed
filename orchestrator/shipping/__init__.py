"""Getting ft and every file a job reads onto fresh nodes (docs/backends.md, "Getting ft
and the spec's files to the nodes").

- job_files: which files the spec points to (custom cluster profile, DeepSpeed JSON), with
  their hashes; the render puts the hashes in the launch file and `ft node` checks them;
- layout: where each shipped thing sits in the job's directory (the same on every backend);
- wheel: builds the wheel of the exact ft that is running (source tree or installed);
- bundle: at submit time, writes the wheel, the node installer and the job files where the
  rendered file expects them (a bundle beside it, or a job directory on a shared filesystem);
- install_ft: stdlib-only; runs on each node and installs the shipped wheel once per node.
"""
