"""One declaration per setting: config dataclass fields carry their help, bounds and choices.

    updates: int = field(default=1_000_000, metadata=setting("fine-tuning updates", min=1))

From that one field come the ``--updates`` CLI option (help + shown default), the sweep-file check
(``FILE: finetune.updates: expected an integer >= 1, got 'ten'``), params.json and the content hash.
"""

from __future__ import annotations


def setting(help: str, *, min=None, max=None, choices=None, cli: bool = True, execution_only: bool = False,
            flag: str | None = None, above=None, below=None, allow_inf: bool = False,
            metavar: str | None = None, parse=None) -> dict:
    """Metadata of one config field.

    min/max are inclusive bounds, above/below exclusive ones; choices a closed set of values.
    cli=False: not a ``synthrl run`` option. execution_only=True: does not change results (device,
    accel, ...): left out of the content hash and of --resume's parameter check. flag: the option
    name when it is not ``--field-name``. allow_inf: a float may be 'inf'. parse: text -> value for
    the CLI (e.g. seed ranges '0-19'), raising ValueError with the expected form.
    """
    return {"help": help, "min": min, "max": max, "choices": tuple(choices) if choices is not None else None,
            "cli": cli, "execution_only": execution_only, "flag": flag, "above": above, "below": below,
            "allow_inf": allow_inf, "metavar": metavar, "parse": parse}
