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


class ServiceError(RapoError):
    """A server (LLM, VLM judge, database) cannot be reached, timed out, or answered with an error."""


class GraphServerError(RapoError):
    """A graph server cannot be reached, refuses the login, or lacks the database, graph or index asked for."""


class GraphCopyError(RapoError):
    """A graph cannot be copied between stores, or the copy's counts do not match its source."""
