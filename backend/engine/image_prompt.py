"""A chat with images, as prompt tokens the scheduler and the prompt cache understand.

The chat template renders each image as one media marker (before its message's text); mtmd
splits the rendered prompt into text tokens and image chunks. In the slot's token list an
image is a run of pseudo-token ids (negative, never real tokens), one per position it takes,
derived from the image's sha256 and the index inside the image: the prefix cache compares
them like text, so a follow-up turn about the same image finds it in the KV cache and does not
encode it again, and a different image (or the same one elsewhere) never matches.

One pseudo-token per position (mtmd's n_pos), not per embedding, keeps a prompt index equal
to its KV position for every model, so batches, cache trimming and sharing need no mapping:
with M-RoPE (Qwen2-VL) an image's n_tokens cells all sit at its first position and the text
after it starts n_pos (the longer side of its grid) later, where ``mtmd_helper_eval_chunks``
and llama-server put it (tests/engine/test_vision_mrope.py holds the engine to that).

An image is never cut: ``ImageSpans.retreat`` moves a cache match that ends inside an image
back to its start, overflow trimming drops whole messages (with their images), and context
accounting counts an image's KV cells (mtmd's n_tokens; M-RoPE images take fewer positions
than cells, so the count is on the safe side).

Threading: ``prepare_image_prompt`` runs on preparation threads, under the state's lock
while it calls into mtmd; the rest are pure values.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from backend.engine.image_decode import DecodedImage, check_image_count, decode_image
from backend.engine.overflow import fit_messages
from backend.engine.prepared import PreparedPrompt
from backend.engine.types import ChatMessage, GenerationRequest, ImageInput
from backend.engine.vision import ImageChunk, MediaChunks, VisionContext
from backend.errors import ImageRejected, InvalidRequest, ModelNotLoaded, VisionUnsupported

IMAGE_ID_STRIDE = 1 << 24  # pseudo ids of one image: -(digest * stride + index + 1)


def image_token_ids(digest: str, n: int) -> list[int]:
    """The pseudo-token ids standing for an image of ``n`` positions."""
    base = int(digest[:15], 16) * IMAGE_ID_STRIDE + 1
    return [-(base + i) for i in range(n)]


@dataclass(frozen=True)
class ImageSpan:
    start: int  # index of the image's first position in the prompt
    image: ImageChunk

    @property
    def end(self) -> int:
        return self.start + self.image.n_pos


@dataclass(frozen=True)
class ImageSpans:
    """Where a prompt's images are; the prompt's MediaChunks are kept alive by ``media``."""

    spans: tuple[ImageSpan, ...] = ()
    media: MediaChunks | None = None

    def retreat(self, n: int) -> int:
        """``n`` (a count of cached prompt tokens), moved back to the start of the image it
        would cut in half."""
        for span in self.spans:
            if span.start < n < span.end:
                return span.start
        return n

    def at(self, pos: int) -> ImageSpan | None:
        for span in self.spans:
            if span.start == pos:
                return span
        return None

    def next_start(self, pos: int, default: int) -> int:
        """The first image start at or after ``pos``; ``default`` when none."""
        return min((s.start for s in self.spans if s.start >= pos), default=default)

    @property
    def extra_cells(self) -> int:
        """KV cells the images take beyond their positions (M-RoPE)."""
        return sum(max(0, s.image.n_tokens - s.image.n_pos) for s in self.spans)


def has_images(request: GenerationRequest) -> bool:
    return bool(request.messages) and any(m.images for m in request.messages or ())


def prepare_image_prompt(state: object, request: GenerationRequest,
                         render: Callable[[Sequence[ChatMessage]], str], budget: int
                         ) -> PreparedPrompt:
    """The prompt of a chat with images. ``render``: the chat template (the model's BOS
    already stripped), ``budget``: tokens the prompt may take."""
    vision: VisionContext | None = getattr(state, "vision", None)
    messages = request.messages or ()
    if vision is None:
        raise VisionUnsupported("This model can't see images: it was loaded without a vision "
                                "projector. Pick a vision model, or send text only.")
    check_image_count(sum(len(m.images) for m in messages))
    numbers: dict[str, int] = {}  # "Image 2" in sentences: its place in the request
    for image in (i for m in messages for i in m.images):
        numbers.setdefault(image.digest, len(numbers) + 1)
    decoded: dict[str, DecodedImage] = {}

    def pixels(image: ImageInput) -> DecodedImage:
        # Decoded only when mtmd needs the pixels: a follow-up turn reusing the last turn's
        # image chunks never decodes its image again.
        if image.digest not in decoded:
            decoded[image.digest] = decode_image(image, numbers[image.digest])
        return decoded[image.digest]

    marked = tuple(_with_markers(m, vision.marker) for m in messages)
    by_id = {id(m): orig for m, orig in zip(marked, messages, strict=True)}
    last: dict[tuple[int, ...], MediaChunks] = {}

    def chunks_of(candidate: Sequence[ChatMessage]) -> MediaChunks:
        key = tuple(map(id, candidate))
        if key not in last:
            text = render(candidate)
            images = [i for m in candidate for i in by_id[id(m)].images]
            if text.count(vision.marker) != len(images):
                raise ImageRejected("The chat template did not place every image in the "
                                    "prompt (it drops or repeats message text); this model's "
                                    "template can't show images as sent.")
            last.clear()
            last[key] = _tokenize(state, vision, text, images, pixels)
        return last[key]

    def count(candidate: Sequence[ChatMessage]) -> int:
        return sum(len(p) if isinstance(p, list) else p.n_tokens
                   for p in chunks_of(candidate).pieces)

    fitted = fit_messages(marked, count, budget, request.overflow)
    media = chunks_of(fitted.messages)
    tokens: list[int] = []
    spans: list[ImageSpan] = []
    for piece in media.pieces:
        if isinstance(piece, list):
            tokens.extend(piece)
        else:
            _check_batch_fits(state, vision, piece)
            spans.append(ImageSpan(len(tokens), piece))
            tokens.extend(image_token_ids(piece.digest, piece.n_pos))
    if not tokens or tokens[-1] < 0:
        # The reply's first token is sampled from the last prompt token's logits: text.
        raise InvalidRequest("The prompt must end with text after its last image.")
    return PreparedPrompt(tokens, fitted.dropped, state, ImageSpans(tuple(spans), media))


def _with_markers(message: ChatMessage, marker: str) -> ChatMessage:
    if not message.images:
        return message
    markers = marker * len(message.images)
    content = f"{markers}\n{message.content}" if message.content else markers
    return dataclasses.replace(message, content=content)


def _tokenize(state: object, vision: VisionContext, text: str, images: list[ImageInput],
              pixels: Callable[[ImageInput], DecodedImage]) -> MediaChunks:
    text.encode("utf-8")  # a lone surrogate fails here, before any native call
    digests = tuple(i.digest for i in images)
    media = _reuse(state, vision, text, digests)
    if media is None:
        decoded = [(pixels(i), i.digest) for i in images]  # outside the lock: may be slow
        with state.lock:  # type: ignore[attr-defined]
            _check_open(state)
            media = vision.tokenize(text, decoded)
    last_image = max((k for k, p in enumerate(media.pieces) if isinstance(p, ImageChunk)),
                     default=-1)
    if last_image >= 0:
        tail_at = text.rfind(vision.marker) + len(vision.marker)
        with state.lock:  # type: ignore[attr-defined]
            vision.recent.appendleft(_Recent(text, digests, media, tail_at, last_image))
    return media


@dataclass(eq=False)
class _Recent:
    """A tokenized prompt with images, for the next turn of its chat to reuse."""

    text: str
    digests: tuple[str, ...]
    media: MediaChunks
    tail_at: int  # where the text after the last image's marker starts
    last_image: int  # index of the last image chunk in ``media.pieces``
    reusable: bool | None = None  # None: not checked yet


def _reuse(state: object, vision: VisionContext, text: str, digests: tuple[str, ...]
           ) -> MediaChunks | None:
    """The next turn of a recent prompt: the same images, the same text up to the last
    one, more text after it. Its image chunks are reused as they are (no decoding, resizing
    or mtmd tokenizing) and only the text after the last image is tokenized, which is
    exactly what mtmd does with that stretch (each stretch between images is tokenized on
    its own), provided mtmd added nothing of its own after the image: checked once per
    prompt by tokenizing the old stretch the same way and comparing."""
    with state.lock:  # type: ignore[attr-defined]
        _check_open(state)
        model = state.model  # type: ignore[attr-defined]
        for entry in vision.recent:
            if entry.digests != digests or not text.startswith(entry.text[:entry.tail_at]):
                continue
            pieces = entry.media.pieces
            if entry.reusable is None:
                after = pieces[entry.last_image + 1:]
                old = [t for p in after if isinstance(p, list) for t in p]
                entry.reusable = all(isinstance(p, list) for p in after) and old == \
                    model.tokenize(entry.text[entry.tail_at:], add_bos=False)
            if not entry.reusable:
                continue
            tail = model.tokenize(text[entry.tail_at:], add_bos=False)
            return MediaChunks([*pieces[:entry.last_image + 1], *([tail] if tail else [])],
                               parent=entry.media)
    return None


def _check_open(state: object) -> None:
    if state.closed:  # type: ignore[attr-defined]
        raise ModelNotLoaded("The model was unloaded while this request was being "
                             "prepared. Load a model and send it again.")


def _check_batch_fits(state: object, vision: VisionContext, image: ImageChunk) -> None:
    """A model that reads an image with bidirectional attention needs all of it in one
    micro-batch; llama.cpp aborts the whole process otherwise, so it is refused here."""
    config = state.ctx.config  # type: ignore[attr-defined]
    if image.n_tokens <= config.n_ubatch:
        return
    with state.lock:  # type: ignore[attr-defined]
        _check_open(state)
        whole = vision.non_causal(image)
    if whole:
        raise ImageRejected(
            f"This image takes {image.n_tokens:,} tokens, more than the {config.n_ubatch:,} "
            "this model reads in one step, and the model must read an image whole. Send a "
            "smaller image, or reload the model with a larger micro-batch (n_ubatch).")
