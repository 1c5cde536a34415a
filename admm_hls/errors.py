"""The one exception type that reaches the user as a single line (no traceback)."""


class UserError(Exception):
    """Bad input from the user: the message names the problem and the fix."""
