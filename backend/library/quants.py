"""Quantization names and split GGUF files, read from file names alone.

A GGUF repo on the Hub holds one file per quantization ("…-Q4_K_M.gguf"), sometimes split into
shards ("…-Q8_0-00001-of-00003.gguf", possibly inside a "Q8_0/" folder). People pick a quant,
not a file, so this module turns a repo's file list into ``QuantOption``s: one per model variant,
with every shard, its size and its LFS sha256. Pure functions, no I/O: ``hub.py`` feeds it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

# Smallest/lowest quality first. The order is what a picker shows and what "a smaller quant"
# means in messages; it follows llama.cpp's bits per weight, not alphabetical order.
QUANT_ORDER: tuple[str, ...] = (
    "IQ1_S", "IQ1_M", "TQ1_0",
    "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ2_M", "TQ2_0",
    "Q2_K_S", "Q2_K", "Q2_K_L", "Q2_K_XL",
    "IQ3_XXS", "IQ3_XS", "IQ3_S", "Q3_K_S", "IQ3_M", "Q3_K_M", "Q3_K", "Q3_K_L", "Q3_K_XL",
    "IQ4_XS", "IQ4_NL", "Q4_0", "Q4_0_4_4", "Q4_0_4_8", "Q4_0_8_8", "MXFP4", "Q4_K_S", "Q4_1",
    "Q4_K_M", "Q4_K", "Q4_K_L", "Q4_K_XL",
    "Q5_0", "Q5_K_S", "Q5_1", "Q5_K_M", "Q5_K", "Q5_K_L", "Q5_K_XL",
    "Q6_K", "Q6_K_L", "Q6_K_XL",
    "Q8_0", "Q8_K_XL",
    "BF16", "F16", "F32",
)
_RANK = {name: i for i, name in enumerate(QUANT_ORDER)}

# Spellings seen on the Hub that mean the same tensor type.
_ALIASES = {"FP16": "F16", "FP32": "F32", "MXFP4_MOE": "MXFP4"}

# A quant is a token of the name: preceded by start, "-", "_", "." or "/", followed by "-", "."
# or the end. Known names are tried longest first so "Q4_K_M" wins over "Q4_K"; the generic
# tail catches quant types newer than this table ("Q3_K_XXL", "IQ5_KS"…) instead of dropping
# the file. Unsloth's dynamic quants keep their "UD-" prefix: they are different files.
_KNOWN = sorted({*QUANT_ORDER, *_ALIASES}, key=len, reverse=True)
_QUANT_RE = re.compile(
    r"(?:^|(?<=[-_./]))"
    r"(?P<quant>(?:UD-)?(?:" + "|".join(map(re.escape, _KNOWN)) + r"|I?Q[1-8]_[0-9A-Z_]*[0-9A-Z]))"
    r"(?=[-.]|$)",
    re.IGNORECASE,
)
_SPLIT_RE = re.compile(r"-(?P<index>\d{5})-of-(?P<count>\d{5})\.gguf$", re.IGNORECASE)

UNKNOWN_QUANT = "unknown"


@dataclass(frozen=True)
class SplitPart:
    index: int  # 1-based, as in the file name
    count: int
    stem: str  # the name without "-0000i-of-0000n.gguf": identical for every shard of one model


@dataclass(frozen=True)
class RemoteFile:
    """One file of a Hub repo as the Hub lists it (``sha256`` is None for non-LFS files)."""

    name: str  # path inside the repo, "/"-separated
    size: int
    sha256: str | None = None


@dataclass(frozen=True)
class QuantOption:
    """One downloadable model variant: a single GGUF, or every shard of a split one in order."""

    quant: str
    files: tuple[str, ...]
    sizes: tuple[int, ...]
    sha256s: tuple[str | None, ...]
    total_size: int
    revision: str = "main"  # hub.list_quants pins the commit it listed, so shards can't mix
    # The vision projector downloaded with the model (the last of ``files``), or None for a
    # text-only model. It lands in the same folder, where the local listing pairs them.
    mmproj: str | None = None

    @property
    def model_files(self) -> tuple[str, ...]:
        """The model's own files (every shard), without its projector."""
        return tuple(f for f in self.files if f != self.mmproj)

    @property
    def model_size(self) -> int:
        """Bytes of the model's own files, without its projector."""
        return sum(s for f, s in zip(self.files, self.sizes, strict=True) if f != self.mmproj)

    @property
    def is_split(self) -> bool:
        return len(self.model_files) > 1

    @property
    def primary_file(self) -> str:
        """The file llama.cpp is pointed at: the first shard finds the others itself."""
        return self.files[0]


def parse_quant(filename: str) -> str | None:
    """The quant named in a file name ("Q4_K_M"), upper-cased and de-aliased, or None."""
    base = filename.rsplit("/", 1)[-1]
    base = _SPLIT_RE.sub(".gguf", base)
    found = _last_quant(base)
    if found is None and "/" in filename:
        # Split quants often live in a folder named after the quant ("Q8_0/model-00001-of-…").
        found = _last_quant(filename.rsplit("/", 2)[-2])
    return found


def _last_quant(text: str) -> str | None:
    # The last match wins: "Qwen2.5-Q4_K_M" is a model name ending in a quant, and a quant-looking
    # token early in the name is more likely part of the model's name.
    matches = list(_QUANT_RE.finditer(text))
    if not matches:
        return None
    quant = matches[-1].group("quant").upper()
    prefix = "UD-" if quant.startswith("UD-") else ""
    core = quant.removeprefix("UD-")
    return prefix + _ALIASES.get(core, core)


def parse_split(filename: str) -> SplitPart | None:
    match = _SPLIT_RE.search(filename)
    if match is None:
        return None
    index, count = int(match["index"]), int(match["count"])
    if not 1 <= index <= count:
        return None
    return SplitPart(index, count, filename[: match.start()])


def quant_sort_key(quant: str) -> tuple[int, str]:
    """Rank in ``QUANT_ORDER``; "UD-" quants sit next to their base; unknown names go last."""
    core = quant.removeprefix("UD-")
    return (_RANK.get(core, len(QUANT_ORDER)), quant)


def is_model_gguf(name: str) -> bool:
    """A GGUF holding a language model: not a vision projector, not an imatrix dump."""
    base = name.rsplit("/", 1)[-1].lower()
    return base.endswith(".gguf") and "mmproj" not in base and "imatrix" not in base


def with_projector(option: QuantOption, projector: RemoteFile | None) -> QuantOption:
    """``option`` downloading ``projector`` beside it (replacing one it had); None: none."""
    files, sizes, shas = (list(t) for t in zip(
        *[(f, s, h) for f, s, h in zip(option.files, option.sizes, option.sha256s, strict=True)
          if f != option.mmproj], strict=True))
    if projector is not None:
        files.append(projector.name)
        sizes.append(projector.size)
        shas.append(projector.sha256.lower() if projector.sha256 else None)
    return QuantOption(option.quant, tuple(files), tuple(sizes), tuple(shas), sum(sizes),
                       option.revision, projector.name if projector is not None else None)


def group_quants(files: Iterable[RemoteFile], revision: str = "main") -> list[QuantOption]:
    """Every complete model variant in a repo's file list, smallest quant first, each with
    the repo's preferred vision projector (f16) when it has any (``projector``).

    A split model whose shards are not all listed is left out: downloading it would give a
    model llama.cpp can't open.
    """
    files = list(files)
    projector = choose_projector(files)
    singles: list[tuple[str, list[RemoteFile]]] = []
    splits: dict[tuple[str, int], dict[int, RemoteFile]] = {}
    for file in files:
        if not is_model_gguf(file.name):
            continue
        part = parse_split(file.name)
        if part is None:
            singles.append((file.name, [file]))
        else:
            splits.setdefault((part.stem, part.count), {})[part.index] = file

    groups = list(singles)
    for (stem, count), parts in splits.items():
        if len(parts) == count:
            groups.append((stem, [parts[i] for i in range(1, count + 1)]))

    options = [
        QuantOption(
            quant=parse_quant(members[0].name) or UNKNOWN_QUANT,
            files=tuple(f.name for f in members),
            sizes=tuple(f.size for f in members),
            sha256s=tuple(f.sha256.lower() if f.sha256 else None for f in members),
            total_size=sum(f.size for f in members),
            revision=revision,
        )
        for _, members in groups
    ]
    options = [with_projector(o, projector) for o in options] if projector else options
    return sorted(options, key=lambda o: (*quant_sort_key(o.quant), o.files[0]))


def pick_quant(options: list[QuantOption], quant: str | None) -> QuantOption | None:
    """The option for ``quant`` (any case), or a sensible default: Q4_K_M, else the middle one."""
    if not options:
        return None
    if quant is not None:
        wanted = quant.upper()
        return next((o for o in options if o.quant == wanted), None)
    preferred = next((o for o in options if o.quant == "Q4_K_M"), None)
    return preferred or options[len(options) // 2]


# --- vision projectors (mmproj files) beside a repo's models --------------------------------

# The order projectors are preferred in, best first: f16 is what llama.cpp's converter
# writes and what model cards recommend; bf16 is as good where supported; q8_0 loses little.
_PREFERRED = ("F16", "BF16", "Q8_0")


def is_projector_file(name: str) -> bool:
    """A GGUF whose name says it is a vision projector ("mmproj-…", "…-mmproj-f16.gguf")."""
    base = name.rsplit("/", 1)[-1].lower()
    return base.endswith(".gguf") and "mmproj" in base



def projector_quant(name: str) -> str:
    """The precision a projector's file name says ("F16", "Q8_0"); "F16" when it says none
    (llama.cpp's converter writes f16 unless told otherwise)."""
    return parse_quant(name.rsplit("/", 1)[-1]) or "F16"


def _preference(quant: str) -> tuple[int, tuple[int, str]]:
    """Sort key, best first: the preferred precisions in order, then the rest by size
    descending (F32 last of all: twice f16's memory for nothing visible)."""
    if quant in _PREFERRED:
        return (_PREFERRED.index(quant), (0, ""))
    if quant == "F32":
        return (len(_PREFERRED) + 1, (0, ""))
    rank, name = quant_sort_key(quant)
    return (len(_PREFERRED), (-rank, name))


def choose_projector(files: Iterable[RemoteFile],
                     fits: Callable[[RemoteFile], bool] | None = None) -> RemoteFile | None:
    """The projector to download beside a model: f16 by default; when ``fits`` (the
    planner's verdict on the model with that projector) refuses it, the best smaller one
    that fits; when none fits, the smallest. None when the repo has no projector."""
    found = sorted((f for f in files if is_projector_file(f.name)),
                   key=lambda f: (_preference(projector_quant(f.name)), f.name))
    if not found:
        return None
    if fits is None or fits(found[0]):
        return found[0]
    smaller = sorted((f for f in found if f.size < found[0].size), key=lambda f: -f.size)
    fitting = next((f for f in smaller if fits(f)), None)
    return fitting or min(found, key=lambda f: f.size)


def pick_local_projector(candidates: Iterable[Path]) -> Path | None:
    """Of the projector files beside a model, the one a load uses: the preferred precision."""
    found = sorted(candidates, key=lambda p: (_preference(projector_quant(p.name)), p.name))
    return found[0] if found else None
