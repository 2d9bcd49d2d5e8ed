"""ft's orchestrator: spec -> launch files -> submitted job. Never imports torch.

Its parts stack one way; each imports only the layers below it (tests/test_layering.py
holds the same list and fails on an arrow back up or any import cycle, a lazy import or
one under TYPE_CHECKING included):

1. this package's root: `__version__` and `DISTRIBUTION`;
2. the ground every layer stands on: `process` (the one place that starts a process),
   `package_data` (where templates/ and clusters/ are found), `output_files` (atomic
   writes, staleness), `train_stack` (is the [train] extra installed?), `status_text`
   (tables and durations for `ft status / list`), `backend_registry` (each backend's name
   and package: the one line a new backend adds; the spec layer reads each backend's
   options.py through it);
3. `clusters` (fabric profiles) and `templating` (the jinja2 environment, quoting, the
   generated files' header), both reading package data;
4. `spec`: the spec file, loaded and validated (the contract's models, the Axolotl keys);
5. `shipping`: what a job ships to its nodes (wheel, installer, the spec's files);
6. `backends`: the protocol (base.py) and its vocabulary (job_model.py, tool_output.py,
   rendezvous.py, launch_line.py), what renders share, one package per backend, and the
   registry's API (`orchestrator.backends`);
7. what drives the backends, side by side: `jobs` (submit, the job store, status and
   watch), `node` (`ft node` on every node), `readiness` (`ft validate` against every
   backend), `example_init` (`ft init --example`);
8. `cli`: the typer commands.
"""

from importlib.metadata import PackageNotFoundError, version

# The name on the package index (`ft` there is someone else's project); the command is `ft`.
DISTRIBUTION = "ft-finetune"

try:
    __version__ = version(DISTRIBUTION)
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.1.0"
