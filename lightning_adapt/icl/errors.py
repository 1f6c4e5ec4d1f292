"""The error of a task specification or its data."""


class ICLTaskError(ValueError):
    """A task specification or its data is invalid; the message names the task and the item."""
