"""The one exception type for user errors (bad files, configs, arguments). Entry points print its message and exit
non-zero without a traceback; everything else is a bug and keeps its traceback."""


class EveError(Exception):
    """A problem with the user's input, named with the file, field or value at fault."""


class BadInput(EveError):
    """One input item cannot be used (a video that cannot be decoded, has no frames, is not there): a command that
    works on one file stops with this line; one that works through many (data preparation) drops the item with it
    and goes on."""
