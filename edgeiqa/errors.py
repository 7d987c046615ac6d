"""Errors a user can cause and fix. The CLI prints them without a traceback."""


class EdgeIQAError(Exception):
    """A user-facing error: bad input, missing file, impossible request."""

    exit_code = 2


class ImageLoadError(EdgeIQAError):
    """One image could not be read. Batch code records it and goes on with the rest."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class DatasetError(EdgeIQAError):
    """A dataset spec, file, column or row is wrong."""


class BudgetExceeded(EdgeIQAError):
    """The model costs more GMACs than the budget allows."""

    exit_code = 3


def did_you_mean(name: str, choices, cutoff: float = 0.6) -> str:
    """'; did you mean 'x'?' for the closest of `choices`, or '' (every unknown-name message uses it)."""
    import difflib

    near = difflib.get_close_matches(name, list(choices), n=1, cutoff=cutoff)
    return f"; did you mean {near[0]!r}?" if near else ""


def choose_names(text: str, choices, flag: str, what: str) -> list[str]:
    """A comma list of names, each one of `choices` ('unknown WHAT' with did-you-mean), none twice, at least one."""
    choices = list(choices)
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise EdgeIQAError(f"{flag} {text!r}: name at least one {what} ({', '.join(choices)})")
    for name in names:
        if name not in choices:
            raise EdgeIQAError(f"unknown {what} {name!r} (choose from {', '.join(choices)}){did_you_mean(name, choices)}")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise EdgeIQAError(f"{flag} names {', '.join(dup)} more than once")
    return names
