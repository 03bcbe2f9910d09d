"""The one exception type for problems a person can fix."""


class TransferLabError(Exception):
    """A user-facing error: the message is written for a person, not a developer.

    Pages show it with `st.error`; the CLI prints it on one line and exits with code 2.
    Anything else that escapes is a bug and keeps its traceback.
    """
