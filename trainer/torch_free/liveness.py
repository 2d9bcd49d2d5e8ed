"""`launch.timeouts`: how long the job waits on a collective, and on a silent peer, before it
ends (torch-free: the spec, `ft node` and the trainer all read it).

Two different failures, two clocks:

- a peer that is gone (node dead, link down, process frozen) stops its heartbeat: every
  rank stamps a counter in the job's rendezvous store every few seconds
  (trainer/distributed/peer_watch.py) and a rank that sees a peer silent for `peer` names
  it and ends the job. This clock runs
  the same in every phase, so a dead node is found in about `peer` even during a save.
- a peer that is alive but never joins the collective (a hang in its own code) is caught by
  the collective timeout. That one must not kill healthy slow phases: the first collectives
  wait for the slowest node to start, prepare its data and load its model, NCCL's first
  communicator on 8+ nodes takes minutes, and at a save every rank waits in a barrier while
  a large checkpoint is written. So start-up (up to the end of the first step, resume
  included) and each checkpoint save get `slow_phase`, steady training gets `collective`.
- a rank that is alive but hung in its own code between steps (a data loader, a callback)
  while the others already wait for it in the next step: each rank stamps the step it is
  in with its heartbeat (trainer/distributed/step_progress.py), and one that has not begun
  the step another rank is in for max(5 x the median step time, `progress`) is named,
  outside start-up and saves. Far sooner than `collective`, and it names the rank.

Every one of these ends the job with PEER_LOST_EXIT_CODE, through `ft node` too.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# env ft node gives the ranks (a plain `ft train` without ft node uses the defaults).
COLLECTIVE_ENV = "FT_COLLECTIVE_TIMEOUT_S"
SLOW_PHASE_ENV = "FT_SLOW_PHASE_TIMEOUT_S"
PEER_ENV = "FT_PEER_TIMEOUT_S"
PROGRESS_ENV = "FT_PROGRESS_TIMEOUT_S"  # "0": off
DEFAULT_COLLECTIVE = "10m"
DEFAULT_SLOW_PHASE = "1h"
DEFAULT_PEER = "2m"
DEFAULT_PROGRESS = "1m"
OFF = "off"
# 69, EX_UNAVAILABLE: a peer is gone or stopped making progress; nothing this rank did wrong.
# The rank that finds it exits with it, and `ft node` (which reads PEER_LOST_REPORT) too.
PEER_LOST_EXIT_CODE = 69
# Heartbeats every PERIOD_S at most (peer/4 when that is shorter): a silent peer is named
# within `peer` + one period. Below MIN_PEER_S a busy host's scheduling hiccup would look
# like a dead node.
PERIOD_S = 5.0
MIN_PEER_S = 5
# Below this a step-progress judgement is noise: a few heartbeats (PERIOD_S) at most.
MIN_PROGRESS_S = 10
# In STOP_REPORT_DIR (trainer.torch_free.exit_codes): a rank waiting on a silent peer says so
# (ft node tells a stop signal it is not a slow save), and a rank that ended the job on a
# lost peer leaves why.
WAITING_REPORT = "waiting-rank-{rank}.json"
PEER_LOST_REPORT = "peer-lost-rank-{rank}.json"

_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600}


def seconds(value: str) -> int:
    """A validated timeout (`90s`, `10m`, `1h`) in seconds."""
    return int(value[:-1]) * _UNIT_SECONDS[value[-1]]


def heartbeat_period_s(peer_s: float) -> float:
    return min(PERIOD_S, peer_s / 4)


class Timeouts(BaseModel):
    """When a job that makes no progress ends (README, "Stops, restarts and checkpoints")."""

    model_config = ConfigDict(extra="forbid")

    collective: str = Field(DEFAULT_COLLECTIVE, description="How long one collective "
                            "(all-reduce, barrier) may wait in steady training before the "
                            "job ends. The spec's `ddp_timeout` (seconds), when set, wins.")
    slow_phase: str = Field(DEFAULT_SLOW_PHASE, description="The same during start-up (up to "
                            "the end of the first step: data preparation, model load, "
                            "resume, NCCL's first connections) and each checkpoint save.")
    peer: str = Field(DEFAULT_PEER, description="A node (or rank) whose heartbeat stops for "
                      "this long is named and the job ends: node dead, link down, process "
                      "frozen.")
    progress: str = Field(DEFAULT_PROGRESS, description="A rank that is alive but has not "
                          "begun the step another rank is in for max(5 x the median step "
                          "time, this) is named and the job ends (hung in its own code: a "
                          "data loader, a callback). Never during start-up or a save. `off` "
                          "leaves such a hang to `collective`.")

    @field_validator("progress", mode="before")
    @classmethod
    def _off(cls, value: object) -> object:
        # YAML reads a bare `off` (and `false`) as the boolean false.
        return OFF if value is False else value

    @field_validator("collective", "slow_phase", "peer", "progress")
    @classmethod
    def _duration(cls, value: str, info) -> str:
        text = str(value).strip()
        if info.field_name == "progress" and text == OFF:
            return text
        if len(text) < 2 or text[-1] not in _UNIT_SECONDS or not text[:-1].isdigit():
            hint = " (or off)" if info.field_name == "progress" else ""
            raise ValueError(f"`{info.field_name}: {value}` is not a duration; use a number "
                             f"and a unit (s, m, h), e.g. 10m{hint}")
        least = {"peer": MIN_PEER_S, "progress": MIN_PROGRESS_S}.get(info.field_name, 1)
        if seconds(text) < least:
            raise ValueError(f"`{info.field_name}: {value}` is too short; use at least "
                             f"{least}s")
        return text

    @model_validator(mode="after")
    def _slow_phase_is_slower(self) -> Timeouts:
        if seconds(self.slow_phase) < seconds(self.collective):
            raise ValueError(f"`slow_phase: {self.slow_phase}` is shorter than `collective: "
                             f"{self.collective}`; start-up and saves need at least as long "
                             "as a steady step")
        return self

    def env(self) -> dict[str, str]:
        """What ft node tells the ranks."""
        return {COLLECTIVE_ENV: str(seconds(self.collective)),
                SLOW_PHASE_ENV: str(seconds(self.slow_phase)),
                PEER_ENV: str(seconds(self.peer)),
                PROGRESS_ENV: "0" if self.progress == OFF else str(seconds(self.progress))}
