"""Errors that mean "the user asked for something we cannot do", as opposed to bugs.

The command line turns a :class:`UserError` into one line on stderr and exit status 2, with no
traceback. Library code raises it (or a subclass) whenever the fix is on the user's side: a missing
file, a bad flag value, a corrupt download. The message must name the file or argument and the fix.
"""


class UserError(Exception):
    """A mistake the user can fix; the message names what is wrong and how to fix it."""


class DataError(UserError):
    """A dataset is missing, truncated, corrupt or in the wrong format (the message names the file)."""
