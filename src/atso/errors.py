"""The one exception type a user sees: a one-line message naming the file or key and the fix."""


class AtsoError(Exception):
    """Bad input or a bad config; the CLI prints the message on one line and exits with code 2."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))
