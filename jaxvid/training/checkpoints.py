"""Training checkpoints with an orbax ``CheckpointManager``.

A checkpoint holds the train state (trainable parameters, optimizer state, step, RNG), the data
iterator's position (grain's orbax handler) and the run config as JSON, saved together so that a
killed run resumes exactly where the last checkpoint left it. The last ``keep`` checkpoints are
kept. Saves are synchronous: a run killed right after a save never leaves a half-written one
(orbax writes to a temporary folder and renames it when complete).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grain
import orbax.checkpoint as ocp


class Checkpoints:
    def __init__(self, directory: str | Path, *, keep: int = 3):
        if keep < 1:
            raise ValueError(f"keep must be >= 1, got {keep}")
        self.directory = Path(directory).absolute()
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, enable_async_checkpointing=False,
                                                 cleanup_tmp_directories=True),
        )

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self.manager.all_steps())

    def save(self, step: int, state: Any, data_iterator, config: dict) -> None:
        self.manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            data=grain.checkpoint.CheckpointSave(data_iterator),
            config=ocp.args.JsonSave(config),
        ), force=True)
        self.manager.wait_until_finished()

    def restore(self, step: int, abstract_state: Any, data_iterator) -> tuple[Any, dict]:
        """The state at ``step`` (placed as ``abstract_state``'s shardings say) and the saved
        config; ``data_iterator`` is moved to the saved position in place."""
        out = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state),
            data=grain.checkpoint.CheckpointRestore(data_iterator),
            config=ocp.args.JsonRestore(),
        ))
        return out.state, out.config

    def saved_config(self, step: int) -> dict:
        return self.manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore())).config

    def close(self) -> None:
        self.manager.close()
