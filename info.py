"""The Info record that identifies who trained a checkpoint; every checkpoint carries one.

It is saved as a plain dict (``asdict``) so that checkpoints load with ``weights_only=True``."""
from dataclasses import asdict, dataclass, fields


@dataclass(frozen=True)
class Info:
    name: str = "srcnn-x3"
    student_id: str = ""
    email: str = ""

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, d):
        """Rebuild from a checkpoint's dict; unknown keys are an error, missing ones take defaults."""
        known = {f.name for f in fields(cls)}
        extra = set(d) - known
        if extra:
            raise ValueError(f"unknown Info fields: {sorted(extra)}")
        return cls(**{k: str(v) for k, v in d.items()})
