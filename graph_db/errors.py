"""Errors a user can fix. The CLI prints them as one line and exits with code 2."""


class RapoError(Exception):
    """A problem with the user's input, files or models, stated as what is wrong and where."""


class GraphFileError(RapoError):
    """A graph file is missing, corrupt, or not a rapo graph."""


class InputFileError(RapoError):
    """A caption, prompt or graph-export file cannot be read."""


class ModelError(RapoError):
    """A model path does not exist or does not hold a loadable model."""


class PromptError(RapoError):
    """A prompt is empty, too long or otherwise unusable."""
