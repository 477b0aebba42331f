"""The one exception type for user errors (bad files, configs, arguments). Entry points print its message and exit
non-zero without a traceback; everything else is a bug and keeps its traceback."""


class EveError(Exception):
    """A problem with the user's input, named with the file, field or value at fault."""
