"""Errors raised while locating, reading and mapping weights; each names the offending file or keys."""


class WeightsError(Exception):
    """Base class: something about a weights folder or file is wrong."""


class WeightFileError(WeightsError):
    """A weights file or folder is missing, unreadable, truncated or ambiguous."""


class WeightMismatchError(WeightsError):
    """The tensors in a file do not match the model's parameters (missing, unexpected, mis-shaped)."""

    def __init__(
        self,
        where: str,
        missing: list[str] | None = None,
        unexpected: list[str] | None = None,
        misshaped: list[tuple[str, tuple, tuple]] | None = None,
        limit: int = 20,
    ):
        self.missing, self.unexpected, self.misshaped = missing or [], unexpected or [], misshaped or []
        lines = [f"weights in {where} do not match the model:"]

        def block(title: str, items: list[str]) -> None:
            if items:
                lines.append(f"  {title} ({len(items)}):")
                lines.extend(f"    {k}" for k in items[:limit])
                if len(items) > limit:
                    lines.append(f"    ... and {len(items) - limit} more")

        block("missing from the file", sorted(self.missing))
        block("in the file but not in the model (unmapped)", sorted(self.unexpected))
        block(
            "wrong shape (key: file shape -> model shape)",
            [f"{k}: {tuple(a)} -> {tuple(b)}" for k, a, b in sorted(self.misshaped)],
        )
        super().__init__("\n".join(lines))
