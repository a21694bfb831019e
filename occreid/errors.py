"""Errors a user can fix. The CLI prints them as one line and exits non-zero, without a traceback."""


class OccreidError(Exception):
    """A problem with the user's input: a path, a file, an option or a config key.

    The message says what is wrong, which file or option, and how to fix it.
    """
