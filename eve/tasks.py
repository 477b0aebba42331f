"""The seven Emu Edit tasks used by FDD's unsupervised dataset (paper §4 "Unsupervised Dataset").

The order is the task id fed to an edit adapter with task embeddings (diffusers `num_class_embeds`).
"""

from __future__ import annotations

from eve.errors import EveError

TASKS: tuple[str, ...] = ("add", "remove", "background", "texture", "local", "style", "global")


def task_id(task: str) -> int:
    """Index of a task name (case-insensitive); an unknown name is a user error listing the valid ones."""
    name = task.strip().lower()
    if name not in TASKS:
        raise EveError(f"unknown task {task!r}; expected one of: {', '.join(TASKS)}")
    return TASKS.index(name)
