class DigitlabError(Exception):
    """A user error: the message is one line that names the problem and the fix.

    The CLI prints it without a traceback and exits with status 2.
    """
