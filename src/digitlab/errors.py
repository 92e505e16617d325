class DigitlabError(Exception):
    """A user error: the message is one line that names the problem and the fix.

    The CLI prints it without a traceback and exits with status 2.
    """


class Interrupted(Exception):
    """Ctrl-C during a run, once the run has recorded it: the message says how to go on.

    Not a KeyboardInterrupt: the CLI framework would swallow that into a bare abort.
    """
