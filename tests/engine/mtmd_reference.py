"""llama.cpp's own way through a prompt with images, as a reference for the engine's.

A plain llama context of the same model (one sequence), its own mtmd context of the same
projector, the prompt tokenized by ``mtmd_tokenize`` and read by ``mtmd_helper_eval_chunks``
(what llama.cpp's mtmd-cli does), then greedy decoding token by token. Nothing of Hearth's is
used, so what it computes is what Hearth must match. ``wrong_positions`` reads the text after
an image from position n_past + n_tokens instead of mtmd's n_past + n_pos: how an engine that
took an image's embedding count for its positions would place it (the test shows it differs).

Runs on the calling thread; the engine's model and contexts are never touched.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from pathlib import Path

import llama_cpp as C
import llama_cpp.mtmd_cpp as M
import numpy as np


@dataclass
class ReferenceRun:
    tokens: list[int]  # greedy reply
    first_logits: np.ndarray  # logits the first reply token was chosen from
    prompt_tokens: list[int]  # text tokens, with -1 for every position an image takes
    n_pos: int  # mtmd_helper_get_n_pos of the prompt's chunks
    n_tokens: int  # mtmd_helper_get_n_tokens of the prompt's chunks (KV cells)


class MtmdReference:
    def __init__(self, model_path: Path, projector: Path, *, marker: str, n_ctx: int,
                 n_batch: int, flash_attn: bool | None = None) -> None:
        C.llama_backend_init()
        params = C.llama_model_default_params()
        params.n_gpu_layers = 0
        self.model = C.llama_model_load_from_file(str(model_path).encode(), params)
        assert self.model, f"could not load {model_path}"
        self.vocab = C.llama_model_get_vocab(self.model)
        self.n_vocab = C.llama_vocab_n_tokens(self.vocab)
        cparams = C.llama_context_default_params()
        cparams.n_ctx = n_ctx
        cparams.n_batch = cparams.n_ubatch = n_batch
        cparams.n_seq_max = 1
        cparams.n_threads = cparams.n_threads_batch = 2
        cparams.flash_attn_type = {None: C.LLAMA_FLASH_ATTN_TYPE_AUTO,
                                   True: C.LLAMA_FLASH_ATTN_TYPE_ENABLED,
                                   False: C.LLAMA_FLASH_ATTN_TYPE_DISABLED}[flash_attn]
        self.lctx = C.llama_init_from_model(self.model, cparams)
        assert self.lctx, "could not create the reference context"
        self.n_batch = n_batch
        mparams = M.mtmd_context_params_default()
        mparams.use_gpu = False
        mparams.n_threads = 2
        mparams.print_timings = False
        self._marker = marker.encode()  # must outlive the context
        mparams.media_marker = self._marker
        self.mctx = M.mtmd_init_from_file(str(projector).encode(), self.model, mparams)
        assert self.mctx, f"could not load {projector}"
        self.mrope = bool(M.mtmd_decode_use_mrope(self.mctx))

    def run(self, text: str, images: list[tuple[int, int, bytes]], n_gen: int, *,
            wrong_positions: bool = False) -> ReferenceRun:
        """Read ``text`` (one marker per image: width, height, RGB bytes) into a fresh
        sequence and reply greedily with ``n_gen`` tokens."""
        C.llama_memory_clear(C.llama_get_memory(self.lctx), True)
        chunks = self._tokenize(text, images)
        try:
            n_pos = int(M.mtmd_helper_get_n_pos(chunks))
            n_tokens = int(M.mtmd_helper_get_n_tokens(chunks))
            prompt = self._prompt_tokens(chunks)
            new_n_past = C.llama_pos(0)
            if wrong_positions:
                n_past = 0
                size = M.mtmd_input_chunks_size(chunks)
                for i in range(size):
                    chunk = M.mtmd_input_chunks_get(chunks, i)
                    rc = M.mtmd_helper_eval_chunk_single(
                        self.mctx, self.lctx, chunk, n_past, 0, self.n_batch, i == size - 1,
                        ctypes.byref(new_n_past))
                    assert rc == 0, rc
                    n_past += int(M.mtmd_input_chunk_get_n_tokens(chunk))
                    new_n_past.value = n_past
            else:
                rc = M.mtmd_helper_eval_chunks(self.mctx, self.lctx, chunks, 0, 0,
                                               self.n_batch, True, ctypes.byref(new_n_past))
                assert rc == 0, rc
            pos = int(new_n_past.value)
            first = self._logits()
            tokens: list[int] = []
            logits = first
            batch = C.llama_batch_init(1, 0, 1)
            try:
                for _ in range(n_gen):
                    token = int(np.argmax(logits))
                    tokens.append(token)
                    if C.llama_vocab_is_eog(self.vocab, token):
                        break
                    batch.n_tokens = 1
                    batch.token[0] = token
                    batch.pos[0] = pos
                    batch.n_seq_id[0] = 1
                    batch.seq_id[0][0] = 0
                    batch.logits[0] = 1
                    assert C.llama_decode(self.lctx, batch) == 0
                    pos += 1
                    logits = self._logits()
            finally:
                C.llama_batch_free(batch)
            return ReferenceRun(tokens, first, prompt, n_pos, n_tokens)
        finally:
            M.mtmd_input_chunks_free(chunks)

    def _tokenize(self, text: str, images: list[tuple[int, int, bytes]]) -> int:
        bitmaps = []
        for width, height, rgb in images:
            buf = (ctypes.c_uint8 * len(rgb)).from_buffer_copy(rgb)
            bitmaps.append(M.mtmd_bitmap_init(width, height, buf))
        try:
            array = (M.mtmd_bitmap_p_ctypes * max(1, len(bitmaps)))(*bitmaps)
            data = text.encode()
            inp = M.mtmd_input_text(data, len(data), True, True)
            chunks = M.mtmd_input_chunks_init()
            rc = M.mtmd_tokenize(self.mctx, chunks, ctypes.byref(inp), array, len(bitmaps))
            assert rc == 0, f"mtmd_tokenize returned {rc}"
            return chunks
        finally:
            for bitmap in bitmaps:
                M.mtmd_bitmap_free(bitmap)

    @staticmethod
    def _prompt_tokens(chunks: int) -> list[int]:
        out: list[int] = []
        for i in range(M.mtmd_input_chunks_size(chunks)):
            chunk = M.mtmd_input_chunks_get(chunks, i)
            if M.mtmd_input_chunk_get_type(chunk) == M.MTMD_INPUT_CHUNK_TYPE_TEXT:
                n = ctypes.c_size_t(0)
                tokens = M.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(n))
                out.extend(int(tokens[j]) for j in range(n.value))
            else:
                out.extend([-1] * int(M.mtmd_input_chunk_get_n_pos(chunk)))
        return out

    def text(self, tokens: list[int]) -> str:
        """The reply's text (an end-of-generation token says nothing)."""
        out = b""
        buf = ctypes.create_string_buffer(256)
        for token in tokens:
            if C.llama_vocab_is_eog(self.vocab, token):
                break
            n = C.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, False)
            out += buf.raw[:n]
        return out.decode("utf-8", "replace")

    def _logits(self) -> np.ndarray:
        ptr = C.llama_get_logits_ith(self.lctx, -1)
        return np.ctypeslib.as_array(ptr, shape=(self.n_vocab,)).copy()

    def close(self) -> None:
        if self.mctx:
            M.mtmd_free(self.mctx)
            self.mctx = None
        if self.lctx:
            C.llama_free(self.lctx)
            self.lctx = None
        if self.model:
            C.llama_model_free(self.model)
            self.model = None
